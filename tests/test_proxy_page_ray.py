"""The proxy's chat page in headless Chromium against the running Ray app: the verification panel lists the
live workers the SDK verifies, and a prompt typed with a fixed seed streams the SDK's own answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from deployments.local import LocalApp
from securechat.client import ClientConfig, SecureChatClient
from securechat.proxy import create_proxy_app
from tests.browser_harness import Recorder, browser_page
from tests.client_harness import serve_asgi
from tests.ray_harness import APP_ARGS, MAIN_REGION, emulator_ark_path, pinned_client_config, platform_root_path

pytestmark = pytest.mark.ray

PROMPT = "Tell me about sealed answers."


@pytest.fixture(scope="module")
def client_config(
    ray_app: LocalApp, securechat_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ClientConfig:
    """What a user pins: the cluster's platform root, a release key, and a manifest for what the workers run."""
    return pinned_client_config(
        tmp_path_factory.mktemp("page-trust"),
        args=APP_ARGS,
        region=MAIN_REGION,
        release="ray-page-test",
        base_url=ray_app.base_url,
        root_public_key_path=Path(f"{platform_root_path(securechat_cache_dir)}.pub"),
        snp_ark_path=emulator_ark_path(securechat_cache_dir),
    )


def test_the_page_verifies_the_live_workers_and_streams_the_sdks_answer(client_config: ClientConfig) -> None:
    with SecureChatClient(client_config) as sdk:
        report = sdk.attest()
        expected = sdk.chat([{"role": "user", "content": PROMPT}], max_new_tokens=12, temperature=0.8, seed=11)
    live = sorted(worker.worker_id for worker in report.verified)
    assert len(live) == 2 and expected

    recorder = Recorder()
    app = create_proxy_app(lambda: SecureChatClient(client_config))
    with serve_asgi(app, lifespan="on") as url, browser_page(url, recorder) as page:
        workers = page.locator("#workers .worker")
        expect(workers).to_have_count(len(live))
        shown = sorted(workers.evaluate_all("items => items.map(item => item.dataset.workerId)"))
        expect(workers.first).to_contain_text("matched securechat release ray-page-test")
        page.fill("#temperature", "0.8")
        page.fill("#top-p", "1")
        page.fill("#seed", "11")
        page.fill("#max-tokens", "12")
        page.fill("#prompt", PROMPT)
        page.press("#prompt", "Enter")
        answer = page.locator(".msg.assistant").last
        expect(answer).to_have_attribute("data-state", "done", timeout=60_000)
        text = answer.locator(".text").text_content()
        tokens = answer.locator(".metrics").get_attribute("data-tokens")
    assert shown == live
    assert text == expected
    assert tokens == "12"
    assert recorder.foreign_requests(url) == [] and recorder.errors == []
