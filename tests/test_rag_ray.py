"""Collections on the running Serve app: workers with the embedder, the store deployment, a restart of the
whole application, and canaries (in a text file and in a PDF parsed inside the replica) that the host never
handles in the clear."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.render_documents import Sect, to_pdf
from deployments.local import LocalApp, deploy
from securechat.attestation import load_manifest
from securechat.client import ClientConfig, SecureChatClient
from securechat.client.collections import DocumentFile
from securechat.client.keyring import Keyring
from securechat.rag.documents.model import PDF
from tests.client_harness import RecordingTransport
from tests.rag_harness import BREAD, TAXES, TRAINS
from tests.ray_harness import APP_ARGS, BATCHED_REGION, emulator_ark_path, pinned_client_config, platform_root_path

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def config(ray_app: LocalApp, securechat_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ClientConfig:
    """Trust files for the batched region, whose workers also measure the embedder."""
    config = pinned_client_config(
        tmp_path_factory.mktemp("rag-trust"),
        args=APP_ARGS,
        region=BATCHED_REGION,
        release="ray-rag",
        base_url=ray_app.base_url,
        root_public_key_path=Path(f"{platform_root_path(securechat_cache_dir)}.pub"),
        snp_ark_path=emulator_ark_path(securechat_cache_dir),
    )
    assert "embedder" in load_manifest(config.manifest_path).manifest.registers
    return config


@pytest.fixture
def client(config: ClientConfig, tmp_path: Path) -> Iterator[SecureChatClient]:
    with SecureChatClient(config, keyring=Keyring(tmp_path / "keyring.json")) as sdk:
        yield sdk


def test_collections_are_served_and_survive_an_application_restart(
    ray_app: LocalApp, client: SecureChatClient, config: ClientConfig, tmp_path: Path
) -> None:
    cid = client.collections.create("ray").collection_id
    written = client.collections.add(
        cid,
        [DocumentFile.checked("bread.md", BREAD, "text/markdown"), DocumentFile.checked("t.txt", TRAINS, "text/plain")],
    )
    bread_id = written[0]["doc_id"]
    assert client.collections.search(cid, "How long must dough rise?", top_k=1)[0].doc_id == bread_id
    completion = client.complete("How long must dough rise?", collection=cid, top_k=1, max_new_tokens=8)
    assert completion.metrics["output_tokens"] == 8 and completion.citations[0]["doc_id"] == bread_id

    # Concurrent ingests over HTTP, each sealed separately: none is lost.
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            client.collections.add(cid, [DocumentFile.checked(f"n{i}.txt", f"Note {i}. {TAXES}", "text/plain")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(client.collections.documents(cid)) == 6

    from ray import serve

    serve.delete("securechat")  # the whole application goes, the store deployment with it
    deploy(APP_ARGS)
    ray_app.wait_ready(BATCHED_REGION, 1)
    with SecureChatClient(config, keyring=client.keyring) as again:  # new workers, new keys: attest afresh
        assert len(again.collections.documents(cid)) == 6
        assert again.collections.search(cid, "How long must dough rise?", top_k=1)[0].doc_id == bread_id
        again.collections.delete(cid)


def test_a_canary_in_a_document_never_reaches_the_host_in_the_clear(
    ray_app: LocalApp, config: ClientConfig, tmp_path: Path, securechat_cache_dir: Path
) -> None:
    canary, pdf_canary = f"CANARY{uuid.uuid4().hex}", f"CANARY{uuid.uuid4().hex}"
    pdf = to_pdf("Alarm codes", [Sect("Backup panel", (f"The backup alarm panel code is {pdf_canary}.",))])
    recording = RecordingTransport()
    http = httpx.Client(transport=recording, timeout=60)
    with SecureChatClient(config, http=http, keyring=Keyring(tmp_path / "keyring.json")) as sdk:
        cid = sdk.collections.create().collection_id
        text = DocumentFile.checked("secret.txt", f"The vault code is {canary}.", "text/plain")
        sdk.collections.add(cid, [text, DocumentFile.binary("alarm.pdf", pdf, PDF)])  # the PDF: parsed in the replica
        assert canary in sdk.collections.search(cid, "vault code")[0].text  # the client reads it back
        hits = sdk.collections.search(cid, "backup alarm panel code", top_k=2)
        assert any(pdf_canary in hit.text and hit.page == 1 for hit in hits)
        sdk.chat("What is the vault code?", collection=cid, max_new_tokens=4)
    for needle in (canary.encode(), pdf_canary.encode()):
        assert needle not in recording.traffic  # every HTTP body the host handled, both ways
        store_files = list(securechat_cache_dir.glob("documents.sqlite3*"))
        assert store_files and all(needle not in path.read_bytes() for path in store_files)
        logs = [p for p in ray_app.session_dir.rglob("*") if p.is_file() and p.stat().st_size < 50 << 20]
        assert logs and all(needle not in path.read_bytes() for path in logs)
        assert needle not in httpx.get(ray_app.metrics_url, timeout=30).content
