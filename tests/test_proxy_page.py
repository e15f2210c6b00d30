"""The proxy's chat page in headless Chromium, against in-process services: a streamed answer equal to the
SDK's, a refusal that sends nothing, a page on another origin that cannot drive the proxy, and collections.
(The same page against the running Ray app: tests/test_proxy_page_ray.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from securechat.client import SecureChatClient
from securechat.proxy import create_proxy_app
from securechat.proxy.page import CONTENT_SECURITY_POLICY
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.store import SQLiteDocumentStore
from tests.browser_harness import Recorder, browser_page
from tests.client_harness import REGISTERS, PathCounter, TrustFiles, make_worker, serve_asgi, serve_gateway
from tests.fakes import ScriptedEngine
from tests.rag_harness import BREAD, client_for, serve_rag

# Slow enough that the page shows the first text while the rest is still on its way (flushes every 250 ms).
ANSWER = ("Sealed ", "end ", "to ", "end.")
DELAY_S = 0.3


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


def test_page_and_assets_carry_a_strict_policy(trust: TrustFiles) -> None:
    app = create_proxy_app(lambda: SecureChatClient(trust.client_config("http://127.0.0.1:9")))
    with serve_asgi(app, lifespan="on") as url:
        answers = [httpx.get(url + path) for path in ("/", "/static/app.js", "/static/app.css")]
        assert httpx.get(url + "/static/../page.py").status_code == 404
        framed = httpx.get(url + "/", headers={"Origin": "https://evil.example"})
    for answer in answers:
        assert answer.status_code == 200
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    html = answers[0].text
    assert "<script>" not in html and "style=" not in html and "http" not in html.replace("http-equiv", "")
    assert framed.status_code == 403  # the Origin check covers the page too


def test_the_page_streams_the_sdks_answer_and_its_metrics(trust: TrustFiles) -> None:
    engine = ScriptedEngine(ANSWER, delay_s=DELAY_S)
    with serve_gateway([make_worker("w0", trust.root, engine=engine)]) as service:
        sdk_text = SecureChatClient(trust.client_config(service.url)).chat(
            [{"role": "user", "content": "Hi"}], max_new_tokens=16, temperature=0.5, seed=7
        )
        app = create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url)))
        recorder = Recorder()
        with serve_asgi(app, lifespan="on") as url, browser_page(url, recorder) as page:
            expect(page.locator("#workers .worker")).to_have_count(1)
            worker = page.locator("#workers .worker")
            expect(worker).to_have_attribute("data-worker-id", "w0")
            expect(worker).to_contain_text("matched securechat release test")
            expect(worker).to_contain_text(REGISTERS["code"])
            expect(worker).to_contain_text(
                "sealed with hpke-mlkem768x25519-hkdf-sha256-aes256gcm (post-quantum hybrid)"
            )
            expect(page.locator("#release-log")).to_contain_text("release log: not pinned")
            page.fill("#temperature", "0.5")
            page.fill("#seed", "7")
            page.fill("#max-tokens", "16")
            page.fill("#prompt", "Hi")
            page.press("#prompt", "Enter")
            answer = page.locator(".msg.assistant").last
            # Text shows while the answer is still streaming, then the whole answer with its metrics.
            page.wait_for_function(
                "() => { const a = document.querySelector('.msg.assistant');"
                " return a && a.dataset.state === 'streaming' && a.querySelector('.text').textContent !== ''; }"
            )
            expect(answer).to_have_attribute("data-state", "done")
            text = answer.locator(".text").text_content()
            metrics = answer.locator(".metrics")
            expect(metrics).to_contain_text("tok/s")
            ttft_ms = int(metrics.get_attribute("data-ttft-ms") or "-1")
            tokens = metrics.get_attribute("data-tokens")
    assert text == sdk_text == "".join(ANSWER)
    assert ttft_ms >= 0 and tokens == str(len(ANSWER))
    assert engine.seen[-1].sampling.temperature == 0.5 and engine.seen[-1].sampling.seed == 7
    assert recorder.foreign_requests(url) == [] and recorder.errors == []  # no CSP violation, nothing off-origin
    assert recorder.failed == ["502 /v1/vector_stores"]  # this service has no collections; the page says so
    assert service.paths["/infer"] == 2


def test_a_refused_service_is_shown_and_nothing_is_sent(trust: TrustFiles) -> None:
    bad = make_worker("w0", trust.root, {**REGISTERS, "code": "55" * 32})
    with serve_gateway([bad]) as service:
        proxy = PathCounter(create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url))))
        with serve_asgi(proxy, lifespan="on") as url, browser_page(url) as page:
            refusal = page.locator("#refusals .refusal")
            expect(refusal).to_have_attribute("data-reason", "register_not_allowed:code")
            expect(refusal).to_contain_text("w0")
            expect(page.locator("#status")).to_contain_text("nothing is sent")
            expect(page.locator("#workers .worker")).to_have_count(0)
            expect(page.locator("#send")).to_be_disabled()
            expect(page.locator("#prompt")).to_be_disabled()
            # Even with the controls forced open, the page's own check refuses to send.
            page.evaluate("for (const id of ['prompt', 'send']) document.getElementById(id).disabled = false")
            page.fill("#prompt", "secret question")
            page.click("#send")
            expect(page.locator("#notice")).to_contain_text("nothing was sent")
            expect(page.locator(".msg")).to_have_count(0)
    assert service.paths["/infer"] == 0 and service.paths["/v1/attestation"] >= 1
    assert proxy.paths["/v1/chat/completions"] == 0 and proxy.paths["/v1/vector_stores"] == 0


EVIL_PAGE = """<!doctype html><script>
const proxy = "{proxy}";
const chat = {{ model: "securechat", messages: [{{ role: "user", content: "leak" }}] }};
async function attempt(path, init) {{
  try {{ const r = await fetch(proxy + path, init); return String(r.status) + ":" + (await r.text()).length; }}
  catch (e) {{ return "blocked"; }}
}}
window.results = Promise.all([
  attempt("/securechat/attestation", {{}}),
  attempt("/v1/chat/completions", {{ method: "POST", headers: {{ "Content-Type": "application/json" }},
                                     body: JSON.stringify(chat) }}),
  attempt("/v1/chat/completions", {{ method: "POST", mode: "no-cors", headers: {{ "Content-Type": "text/plain" }},
                                     body: JSON.stringify(chat) }}),
]);
</script>"""


def test_a_page_on_another_origin_cannot_drive_the_proxy_or_read_it(trust: TrustFiles) -> None:
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    with serve_gateway([make_worker("w0", trust.root)]) as service:
        proxy = PathCounter(create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url))))
        with serve_asgi(proxy, lifespan="on") as proxy_url:
            evil = FastAPI()
            evil.get("/")(lambda: HTMLResponse(EVIL_PAGE.format(proxy=proxy_url)))
            with serve_asgi(evil) as evil_url, browser_page(evil_url) as page:
                results = page.evaluate("window.results")
    # CORS fetches fail outright; the no-cors post is opaque (status 0) and was refused by the proxy anyway.
    assert results == ["blocked", "blocked", "0:0"]
    assert service.paths["/infer"] == 0 and service.paths["/v1/attestation"] == 0


def test_collections_upload_ask_and_cite(trust: TrustFiles, embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "docs.sqlite3")
    notes = tmp_path / "bread.txt"
    notes.write_text(BREAD)
    engine = ScriptedEngine(("Let it rise ", "for an hour [1]."))
    with serve_rag(trust, embedder, store, engine) as service:
        app = create_proxy_app(lambda: client_for(service, trust, tmp_path))
        with serve_asgi(app, lifespan="on") as url, browser_page(url) as page:
            expect(page.locator("#workers .worker")).to_have_count(1)
            page.fill("#collection-name", "kitchen")
            page.click("#create-collection")
            expect(page.locator("#collection-notice")).to_contain_text("created kitchen")
            page.set_input_files("#files", str(notes))
            page.click("#upload")
            expect(page.locator("#collection-notice")).to_contain_text("added bread.txt")
            expect(page.locator("#collection option:checked")).to_have_text("kitchen (1 file)")
            page.fill("#prompt", "How long should the dough rise?")
            page.click("#send")
            answer = page.locator(".msg.assistant").last
            expect(answer).to_have_attribute("data-state", "done")
            citation = answer.locator(".citation").first
            expect(citation.locator(".citation-place")).to_contain_text("[1] bread.txt (score")
            excerpt = citation.locator(".citation-excerpt")
            expect(excerpt).to_be_hidden()
            citation.locator(".citation-place").click()  # a click shows the excerpt the answer drew on
            expect(excerpt).to_be_visible()
            expect(excerpt).to_contain_text("Knead the dough for ten minutes")
            text = answer.locator(".text").text_content()
    assert text == "Let it rise for an hour [1]."
    assert "Knead the dough" in engine.seen[-1].messages[0].content  # the excerpt reached the worker's prompt
