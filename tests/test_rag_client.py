"""Collections end to end in-process: the SDK and CLI against the gateway, workers with the real embedder, and
the SQLite store. The host side sees ids, sizes and sealed blobs only."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from securechat.cli import main
from securechat.client import SecureChatClient, ServiceError
from securechat.client.collections import DocumentError, DocumentFile
from securechat.client.keyring import Keyring, KeyringError
from securechat.db import DatabaseUnavailable
from securechat.errors import ErrorCode
from securechat.rag.bodies import CollectionRef, DocumentInput, IngestBody
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.keys import CollectionKey
from securechat.rag.store import SQLiteDocumentStore
from tests.client_harness import LocalService, TrustFiles
from tests.fakes import ScriptedEngine
from tests.rag_harness import ANSWER, BREAD, RAG, TAXES, TRAINS, client_for, serve_rag


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture
def store(tmp_path: Path) -> SQLiteDocumentStore:
    return SQLiteDocumentStore(tmp_path / "documents.sqlite3")


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(ANSWER)


@pytest.fixture
def service(
    trust: TrustFiles, embedder: MiniLMEmbedder, store: SQLiteDocumentStore, engine: ScriptedEngine
) -> Iterator[LocalService]:
    with serve_rag(trust, embedder, store, engine) as running:
        yield running


def files(*texts: tuple[str, str]) -> list[DocumentFile]:
    return [
        DocumentFile.checked(name, text, "text/markdown" if name.endswith(".md") else "text/plain")
        for name, text in texts
    ]


def test_a_collection_from_creation_to_cited_answers(
    service: LocalService, trust: TrustFiles, tmp_path: Path, engine: ScriptedEngine
) -> None:
    with client_for(service, trust, tmp_path) as client:
        collection = client.collections.create("kitchen")
        assert stat.S_IMODE(client.keyring.path.stat().st_mode) == 0o600
        written = client.collections.add(
            collection.collection_id, files(("bread.md", BREAD), ("trains.txt", TRAINS), ("taxes.txt", TAXES))
        )
        assert [w["num_chunks"] for w in written] == [1, 1, 1]
        listed = client.collections.list_all()
        assert [(c.collection_id, c.name, c.num_documents, c.has_key) for c in listed] == [
            (collection.collection_id, "kitchen", 3, True)
        ]
        documents = client.collections.documents(collection.collection_id)
        assert sorted(d.filename for d in documents) == ["bread.md", "taxes.txt", "trains.txt"]  # opened here

        hits = client.collections.search(collection.collection_id, "How long should dough rise?", top_k=2)
        bread_id = next(d.doc_id for d in documents if d.filename == "bread.md")
        assert hits[0].doc_id == bread_id and "Knead" in hits[0].text and hits[0].score > hits[1].score

        completion = client.complete(
            "When is my train to Vienna?", collection=collection.collection_id, top_k=2, max_new_tokens=8
        )
        trains_id = next(d.doc_id for d in documents if d.filename == "trains.txt")
        assert completion.text == "From your documents: see [1]."
        assert completion.citations[0]["doc_id"] == trains_id and completion.citations[0]["n"] == 1
        system = engine.seen[-1].messages[0]
        assert system.role == "system" and "[1] trains\n" in system.content and "22:15" in system.content
        assert completion.citations[0]["title"] == "trains" and "22:15" in completion.citations[0]["text"]

        client.collections.delete_document(collection.collection_id, trains_id)
        after = client.collections.search(collection.collection_id, "When is my train to Vienna?", top_k=3)
        assert trains_id not in {hit.doc_id for hit in after}  # nothing deleted is ever retrieved

        client.collections.delete(collection.collection_id)
        with pytest.raises(KeyringError):
            client.keyring.get(collection.collection_id)  # the key is forgotten: crypto-shredded
        with pytest.raises(ServiceError) as gone:
            client.collections.documents(collection.collection_id)
    assert gone.value.status == 404


def test_concurrent_ingests_into_one_collection_lose_nothing(
    service: LocalService, trust: TrustFiles, tmp_path: Path
) -> None:
    with client_for(service, trust, tmp_path) as client:
        collection = client.collections.create()
        errors: list[BaseException] = []

        def add(i: int) -> None:
            try:
                client.collections.add(collection.collection_id, files((f"note{i}.txt", f"Note {i}: {TAXES}")))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(i,)) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        names = sorted(d.filename for d in client.collections.documents(collection.collection_id))
    assert names == [f"note{i}.txt" for i in range(5)]


def test_tenants_are_refused_on_the_host_side_and_cryptographically(
    service: LocalService, trust: TrustFiles, tmp_path: Path
) -> None:
    with client_for(service, trust, tmp_path) as owner, client_for(service, trust, tmp_path, "tenant2") as other:
        collection = owner.collections.create()
        cid = collection.collection_id
        owner.collections.add(cid, files(("bread.md", BREAD)))
        # The other tenant even holds the key: the host still refuses it (403) before any worker is involved.
        other.keyring.add(cid, "tenant2", owner.keyring.get(cid).key)
        for attempt in (
            lambda: other.collections.documents(cid),
            lambda: other.collections.search(cid, "bread"),
            lambda: other.collections.add(cid, files(("x.txt", "text"))),
            lambda: other.chat("bread?", collection=cid),
        ):
            with pytest.raises(ServiceError) as refused:
                attempt()
            assert (refused.value.status, refused.value.code) == (403, "forbidden")
        owner.keyring.add("col_nonexistent", "tenant1", CollectionKey.generate())
        with pytest.raises(ServiceError) as unknown:
            owner.collections.search("col_nonexistent", "bread")
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_collection")
        # The owner with a wrong key: the same opaque refusal as an envelope no worker can open, no results.
        owner.keyring.remove(cid)
        owner.keyring.add(cid, "tenant1", CollectionKey.generate())
        with pytest.raises(ServiceError) as wrong:
            owner.collections.search(cid, "bread")
        assert (wrong.value.status, wrong.value.code) == (400, "invalid_envelope")


def test_bad_documents_get_their_codes_and_limits(service: LocalService, trust: TrustFiles, tmp_path: Path) -> None:
    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        with pytest.raises(DocumentError) as empty:
            DocumentFile.checked("empty.txt", "  \n", "text/plain")  # refused before anything is sent
        assert empty.value.code is ErrorCode.DOCUMENT_EMPTY
        odd = tmp_path / "slides.key"
        odd.write_bytes(b"\x00keynote")
        with pytest.raises(DocumentError):
            DocumentFile.from_path(odd)

        def sealed_ingest(*documents: DocumentInput) -> ServiceError:
            body = IngestBody(CollectionRef(cid, client.keyring.get(cid).key), documents).to_bytes()
            with pytest.raises(ServiceError) as refused:
                client.open_sealed("ingest", body, f"/v1/collections/{cid}/documents")
            return refused.value

        # A client that skips its own checks: the worker refuses, with a code and the limit the host knows.
        empty_error = sealed_ingest(DocumentInput("d1", "e.txt", "text/plain", "   "))
        assert (empty_error.status, empty_error.code) == (413, "document_empty")
        pdf_error = sealed_ingest(DocumentInput("d1", "a.pdf", "application/pdf", "text"))
        assert (pdf_error.status, pdf_error.code) == (415, "unsupported_document_type")
        large = sealed_ingest(DocumentInput("d1", "big.txt", "text/plain", "word " * (RAG.max_document_bytes // 5 + 1)))
        assert (large.status, large.code) == (413, "document_too_large")
        too_many = sealed_ingest(*(DocumentInput(f"d{i}", f"{i}.txt", "text/plain", f"doc {i}") for i in range(7)))
        assert (too_many.status, too_many.code) == (413, "too_many_documents")
        assert client.collections.documents(cid) == []  # nothing of any refused ingest was kept


def test_limit_numbers_are_named_in_the_error_body(service: LocalService, trust: TrustFiles, tmp_path: Path) -> None:
    import httpx

    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        body = IngestBody(
            CollectionRef(cid, client.keyring.get(cid).key),
            (DocumentInput("d1", "big.txt", "text/plain", "word " * (RAG.max_document_bytes // 5 + 1)),),
        ).to_bytes()
        keys = client._verified_keys(refresh=False)
        sealed = client._seal(body, keys, "ingest")
        payload = {"tenant_id": "tenant1", "region": "us-west-1", "envelope": sealed.envelope.to_dict()}
        response = httpx.post(f"{service.url}/v1/collections/{cid}/documents", json=payload, timeout=30)
    assert response.status_code == 413
    assert response.json() == {
        "error": "document_too_large",
        "message": "A document is over the size limit.",
        "request_id": sealed.request_id,
        "limit": RAG.max_document_bytes,
    }


def test_embeddings_are_the_models_own(
    service: LocalService, trust: TrustFiles, tmp_path: Path, embedder: MiniLMEmbedder
) -> None:
    texts = ["sealed embeddings", "second input"]
    with client_for(service, trust, tmp_path) as client:
        embeddings = client.embed(texts)
        vectors = np.array(embeddings.vectors, dtype=np.float32)
        assert embeddings.input_tokens > len(texts)
    np.testing.assert_allclose(vectors, embedder.embed(texts), atol=1e-6)


def test_the_host_side_never_holds_document_text(
    service: LocalService,
    trust: TrustFiles,
    tmp_path: Path,
    store: SQLiteDocumentStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = "CANARY" + "7f3a9c" * 4
    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        client.collections.add(cid, files(("secret.txt", f"The launch code is {canary}. {TAXES}")))
        hits = client.collections.search(cid, "launch code")
        assert canary in hits[0].text  # the client reads it back
    store.close()
    raw = b"".join(p.read_bytes() for p in store.path.parent.glob("documents.sqlite3*"))
    assert canary.encode() not in raw and b"secret.txt" not in raw and b"launch code" not in raw
    assert canary not in caplog.text


def test_the_cli_manages_collections_and_documents(
    service: LocalService, trust: TrustFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring = ["--keyring", str(tmp_path / "cli-keyring.json")]
    flags = [*trust.cli_flags(service.url), *keyring]
    assert main(["collections", "create", "--name", "notes", *flags]) == 0
    cid = capsys.readouterr().out.split()[0]
    note = tmp_path / "bread.md"
    note.write_text(BREAD)
    assert main(["docs", "add", cid, str(note), *flags]) == 0
    doc_id = capsys.readouterr().out.split()[0]
    assert main(["docs", "list", cid, *flags]) == 0
    assert f"{doc_id}  bread.md  text/markdown" in capsys.readouterr().out
    assert main(["chat", "How long does dough rise?", "--collection", cid, *flags]) == 0
    out = capsys.readouterr().out
    assert '[1] bread.md, "Baking bread" (' in out and "    Knead the dough" in out
    exported = tmp_path / "key.json"
    assert main(["collections", "export", cid, "--out", str(exported), *keyring]) == 0
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    other_keyring = ["--keyring", str(tmp_path / "other-keyring.json")]
    assert main(["collections", "import", str(exported), *other_keyring]) == 0
    imported = Keyring(tmp_path / "other-keyring.json").get(cid).key
    assert imported == Keyring(tmp_path / "cli-keyring.json").get(cid).key
    assert main(["docs", "delete", cid, doc_id, *flags]) == 0
    assert main(["collections", "delete", cid, *flags]) == 0
    capsys.readouterr()
    assert main(["docs", "list", cid, *flags]) == 1  # it is gone: a clear error, no traceback
    assert "unknown_collection (HTTP 404)" in capsys.readouterr().err


def test_the_plain_path_seals_a_rag_prompt_at_the_gateway(
    service: LocalService, trust: TrustFiles, tmp_path: Path
) -> None:
    """The prototype-compatible path: the TLS-terminating gateway seals the prompt and the collection key at once;
    the SSE stream's last event carries the citations."""
    import json

    import httpx

    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        written = client.collections.add(cid, files(("trains.txt", TRAINS), ("bread.md", BREAD)))
        key = client.keyring.get(cid).key.to_b64()
    body = {
        "tenant_id": "tenant1",
        "region": "us-west-1",
        "mode": "rag",
        "prompt": "When does the sleeper to Vienna leave?",
        "collection_id": cid,
        "collection_key": key,
        "top_k": 1,
    }
    response = httpx.post(f"{service.url}/infer", json=body, headers={"Accept": "text/event-stream"}, timeout=30)
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    done = json.loads(events[-1][1].removeprefix("data: "))
    assert events[-1][0] == "event: done" and done["citations"][0]["doc_id"] == written[0]["doc_id"]
    wrong = httpx.post(f"{service.url}/infer", json={**body, "collection_key": "AAAA"}, timeout=30)
    assert wrong.status_code == 422 and wrong.json()["error"] == "invalid_request"


class LosableStore(SQLiteDocumentStore):
    """A store whose database can be taken away: every call then fails as a lost PostgreSQL does."""

    down = False

    def __getattribute__(self, name: str) -> Any:
        if name in {"collection", "list_collections", "begin_ingest", "commit", "load"} and object.__getattribute__(
            self, "down"
        ):
            raise DatabaseUnavailable("lost the database at postgresql://db:5432/securechat: terminated")
        return object.__getattribute__(self, name)


def test_a_lost_store_database_is_503_and_keeps_nothing(
    trust: TrustFiles, embedder: MiniLMEmbedder, engine: ScriptedEngine, tmp_path: Path
) -> None:
    store = LosableStore(tmp_path / "documents.sqlite3")
    with serve_rag(trust, embedder, store, engine) as service, client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        store.down = True
        with pytest.raises(ServiceError) as listing:
            client.collections.list_all()
        assert (listing.value.status, listing.value.code) == (503, "database_unavailable")
        with pytest.raises(ServiceError) as ingest:
            client.collections.add(cid, files(("a.txt", TRAINS)))
        assert (ingest.value.status, ingest.value.code) == (503, "database_unavailable")
        store.down = False
        assert client.collections.documents(cid) == []  # the failed ingest kept nothing
        client.collections.add(cid, files(("a.txt", TRAINS)))  # and it works again once the database is back
        assert len(client.collections.documents(cid)) == 1


@pytest.mark.parametrize(("answered_id", "code"), [("reuse", "duplicate_collection_id"), ("../x", "invalid_response")])
def test_a_service_cannot_make_the_client_overwrite_a_key_or_break_the_keyring(
    answered_id: str, code: str, trust: TrustFiles, tmp_path: Path
) -> None:
    """The host answers a new collection with the id of one the keyring holds, or with an id that is not one:
    refused by name, the held key untouched, the keyring still readable."""
    import httpx

    keyring = Keyring(tmp_path / "keyring.json")
    held = keyring.add("c_held", "tenant1", CollectionKey.generate())

    def lying_service(request: httpx.Request) -> httpx.Response:
        collection_id = "c_held" if answered_id == "reuse" else answered_id
        item = {"collection_id": collection_id, "created_at": 1.0, "num_documents": 0, "num_chunks": 0}
        return httpx.Response(201, json={**item, "num_bytes": 0, "tenant_id": "tenant1"})

    http = httpx.Client(transport=httpx.MockTransport(lying_service))
    client = SecureChatClient(trust.client_config("http://service.test"), http, keyring=keyring)
    with pytest.raises(ServiceError) as refused:
        client.collections.create("new")
    assert refused.value.code == code
    assert [entry.collection_id for entry in keyring.entries()] == ["c_held"]
    assert keyring.get("c_held").key == held.key
