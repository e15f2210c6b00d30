"""PDF, Word and HTML documents through every way in (the SDK, the CLI, the proxy's OpenAI vector stores and
the chat page), answered with citations to their pages and headings; hostile files refused by name with
nothing stored. In-process: gateway, a worker with the real embedder, an SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from playwright.sync_api import expect

from benchmarks.render_documents import Sect, to_docx, to_html, to_pdf
from securechat.cli import main
from securechat.client import ServiceError
from securechat.client import collections as client_collections
from securechat.client.collections import DocumentFile
from securechat.proxy import create_proxy_app
from securechat.rag.documents.model import PDF
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.store import SQLiteDocumentStore
from tests.browser_harness import browser_page
from tests.client_harness import LocalService, TrustFiles, serve_asgi
from tests.fakes import ScriptedEngine
from tests.rag_harness import client_for, serve_rag
from tests.test_rag_documents import _encrypted_pdf

ESPRESSO = (
    Sect(
        "Filling the tank",
        ("Fill the water tank with fresh cold water up to the line marked MAX before the first cup.",),
    ),
    Sect("Grinding the beans", ("Set the burr grinder to level four for a double shot; finer levels slow the pour.",)),
    Sect("Descaling", ("Run the descaling program with one sachet of citric acid every thirty days of use.",)),
)
LEAVE = (
    Sect("Annual leave", ("Every employee receives twenty-eight days of paid holiday per calendar year.",)),
    Sect("Parental leave", ("New parents may take up to twenty-six weeks of leave at full salary.",)),
)
POOLS = (
    Sect("Opening hours", ("The Riverside pool opens at six in the morning and closes at ten in the evening.",)),
    Sect("Lane swimming", ("Lane swimming sessions run every weekday from seven until nine in the morning.",)),
)


QUESTIONS = (  # (question, where the answer is, as the CLI prints it, a phrase of its excerpt)
    ("Which grinder level for a double shot?", 'manual.pdf, page 2, "Grinding the beans"', "level four"),
    ("How many weeks can new parents take off?", 'leave.docx, "Parental leave"', "twenty-six weeks"),
    ("When can I swim laps before work?", 'pools.html, "Lane swimming"', "seven until nine"),
)


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="module")
def service(
    trust: TrustFiles, embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalService]:
    store = SQLiteDocumentStore(tmp_path_factory.mktemp("docs") / "documents.sqlite3")
    with serve_rag(trust, embedder, store, ScriptedEngine(("See ", "[1]."))) as running:
        yield running


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"manual.pdf": to_pdf("Aurora espresso manual", ESPRESSO), "leave.docx": to_docx("Leave policy", LEAVE)}
    paths["pools.html"] = to_html("Riverside pools", POOLS)
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in paths}


def test_the_sdk_cites_pages_and_headings(
    service: LocalService, trust: TrustFiles, files: dict[str, Path], tmp_path: Path
) -> None:
    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create("office").collection_id
        added = client.collections.add(cid, [DocumentFile.from_path(path) for path in files.values()])
        assert len(added) == 3
        hits = client.collections.search(cid, "how often should I descale the machine", top_k=1)
        assert (hits[0].page, hits[0].heading) == (3, "Descaling") and "citric acid" in hits[0].text
        completion = client.complete("How many weeks can new parents take off?", collection=cid, top_k=1)
        cited = completion.citations[0]
        assert (cited["title"], cited["heading"], cited["page"]) == ("Leave policy", "Parental leave", None)
        assert "twenty-six weeks" in cited["text"]
        lanes = client.collections.search(cid, "when can I swim laps before work", top_k=1)[0]
        assert lanes.heading == "Lane swimming" and "Careers" not in lanes.text  # the page's menus are gone
        titles = {d.filename: d for d in client.collections.documents(cid)}
        assert set(titles) == {"manual.pdf", "leave.docx", "pools.html"}


def test_files_go_in_batches_that_fit_the_body_limit(
    service: LocalService, trust: TrustFiles, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_collections, "INGEST_BATCH_BYTES", 30_000)  # below the Word file alone (~36 KB)
    ordered = [DocumentFile.from_path(files[name]) for name in ("manual.pdf", "pools.html", "leave.docx")]
    with client_for(service, trust, tmp_path, tenant="tenant3") as client:
        cid = client.collections.create("batched").collection_id
        batches = list(client.collections.add_in_batches(cid, ordered))
        assert [len(batch) for batch in batches] == [2, 1]  # the small two together, the Word file alone
        assert {d.filename for d in client.collections.documents(cid)} == set(files)


def test_the_cli_adds_all_three_and_prints_where_each_answer_comes_from(
    service: LocalService, trust: TrustFiles, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [*trust.cli_flags(service.url), "--tenant", "tenant-cli", "--keyring", str(tmp_path / "keyring.json")]
    assert main(["collections", "create", "--name", "office", *flags]) == 0
    cid = capsys.readouterr().out.split()[0]
    assert main(["docs", "add", cid, *map(str, files.values()), *flags]) == 0
    assert "manual.pdf" in capsys.readouterr().out
    for question, place, excerpt in QUESTIONS:
        assert main(["chat", question, "--collection", cid, "--top-k", "1", *flags]) == 0
        out = capsys.readouterr().out
        assert f"[1] {place} (" in out and excerpt in out


def test_the_proxy_takes_all_three_through_openai_vector_store_uploads(
    service: LocalService, trust: TrustFiles, files: dict[str, Path], tmp_path: Path
) -> None:
    connect = lambda: client_for(service, trust, tmp_path, tenant="tenant-proxy")  # noqa: E731
    with serve_asgi(create_proxy_app(connect), lifespan="on") as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        store = api.vector_stores.create(name="office")
        for path in files.values():
            api.vector_stores.files.upload(vector_store_id=store.id, file=path.open("rb"))
        for question, place, excerpt in QUESTIONS:
            reply = api.chat.completions.create(
                model="securechat",
                messages=[{"role": "user", "content": question}],
                extra_body={"vector_store_ids": [store.id], "max_num_results": 1},
            )
            cited = (reply.model_extra or {})["citations"][0]
            assert _place(cited["filename"], cited.get("page"), cited.get("heading")) == place
            assert excerpt in cited["text"]


def test_the_chat_page_uploads_all_three_and_shows_each_cited_place(
    service: LocalService, trust: TrustFiles, files: dict[str, Path], tmp_path: Path
) -> None:
    connect = lambda: client_for(service, trust, tmp_path, tenant="tenant-page")  # noqa: E731
    with serve_asgi(create_proxy_app(connect), lifespan="on") as url, browser_page(url) as page:
        expect(page.locator("#workers .worker")).to_have_count(1)
        page.fill("#collection-name", "office")
        page.click("#create-collection")
        expect(page.locator("#collection-notice")).to_contain_text("created office")
        page.set_input_files("#files", [str(path) for path in files.values()])
        page.click("#upload")
        expect(page.locator("#collection-notice")).to_contain_text("added manual.pdf, leave.docx, pools.html")
        for question, place, excerpt in QUESTIONS:
            page.fill("#prompt", question)
            page.click("#send")
            answer = page.locator(".msg.assistant").last
            expect(answer).to_have_attribute("data-state", "done")
            citation = answer.locator(".citation").first
            expect(citation.locator(".citation-place")).to_contain_text(place.replace('"', "“", 1).replace('"', "”", 1))
            citation.locator(".citation-place").click()
            expect(citation.locator(".citation-excerpt")).to_contain_text(excerpt)


def _place(filename: str, page: int | None, heading: str | None) -> str:
    """As the CLI prints a citation's place: file, page (PDF), "heading"."""
    return ", ".join([filename, *([f"page {page}"] if page else []), *([f'"{heading}"'] if heading else [])])


def test_hostile_files_are_refused_and_nothing_is_stored(
    service: LocalService, trust: TrustFiles, tmp_path: Path
) -> None:
    with client_for(service, trust, tmp_path, tenant="tenant2") as client:  # the others use tenant1's quota
        cid = client.collections.create("x").collection_id
        client.collections.add(cid, [DocumentFile.binary("ok.pdf", to_pdf("Fine", ESPRESSO), PDF)])
        before = client.collections.documents(cid)
        cases = {
            "encrypted_document": DocumentFile.binary("locked.pdf", _encrypted_pdf(), PDF),
            "document_type_mismatch": DocumentFile.binary("fake.pdf", to_html("x", POOLS), PDF),
            "malformed_document": DocumentFile.binary("cut.pdf", to_pdf("x", ESPRESSO)[:600], PDF),
        }
        for code, document in cases.items():
            with pytest.raises(ServiceError) as refused:
                client.collections.add(cid, [DocumentFile.binary("ok2.pdf", to_pdf("Also fine", LEAVE), PDF), document])
            assert refused.value.code == code and refused.value.status in (413, 415, 422)
        assert client.collections.documents(cid) == before  # the good document beside it was not stored either
