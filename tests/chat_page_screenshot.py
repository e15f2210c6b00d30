"""Take the README's screenshot of the chat page: ``python -m tests.chat_page_screenshot docs/chat-page.png``.

In-process and Ray-free, like tests/test_proxy_page.py: a gateway over two workers, one whose registers the
pinned manifest allows (with collections and a scripted engine, so the answer reads well) and one it refuses;
the page creates a collection, uploads a note, and asks.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import expect

from securechat.proxy import create_proxy_app
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.modes import CollectionModes
from securechat.rag.service import RagOptions, RagService
from securechat.rag.store import SQLiteDocumentStore
from securechat.rag.store_client import LocalDocumentStore
from tests.browser_harness import browser_page
from tests.client_harness import REGISTERS, TrustFiles, make_worker, serve_asgi, serve_gateway
from tests.fakes import ScriptedEngine
from tests.rag_harness import BREAD, POLICY, RAG, client_for

ANSWER = ("Knead the dough for ten minutes, ", "then let it rise for an hour ", "in a warm place [1].")


def take(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        trust = TrustFiles.create(directory / "trust")
        documents = LocalDocumentStore(SQLiteDocumentStore(directory / "docs.sqlite3"))
        options = RagOptions(RAG.max_document_bytes, RAG.chunk_tokens, RAG.overlap_tokens, RAG.cache_bytes, 60)
        modes = CollectionModes(RagService(MiniLMEmbedder(), documents, options))
        good = make_worker("us-west-1-a1b2c3", trust.root, collections=modes, engine=ScriptedEngine(ANSWER))
        bad = make_worker("us-west-1-d4e5f6", trust.root, {**REGISTERS, "code": "55" * 32})
        notes = directory / "bread.txt"
        notes.write_text(BREAD)
        with serve_gateway([good, bad], documents=documents, rag=RAG, default_policy=POLICY) as service:
            app = create_proxy_app(lambda: client_for(service, trust, directory))
            with serve_asgi(app, lifespan="on") as url, browser_page(url) as page:
                expect(page.locator("#workers .worker")).to_have_count(1)
                page.fill("#collection-name", "kitchen")
                page.click("#create-collection")
                expect(page.locator("#collection-notice")).to_contain_text("created")
                page.set_input_files("#files", str(notes))
                page.click("#upload")
                expect(page.locator("#collection-notice")).to_contain_text("added")
                page.fill("#seed", "1")
                page.fill("#prompt", "How long should the dough rise?")
                page.click("#send")
                expect(page.locator(".msg.assistant").last).to_have_attribute("data-state", "done")
                page.screenshot(path=str(out), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="the PNG to write")
    take(parser.parse_args().out)


if __name__ == "__main__":
    main()
