"""The host as attacker on collections: it runs the store and edits its tables, keeps backups, and replays.

Each test performs the attack through the real interfaces (the SDK and CLI against the gateway, in-process
workers with the real embedder, an SQLite store whose tables the test edits as a dishonest host would) and
checks it is refused with a named reason and that nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from securechat.cli import main
from securechat.client import SecureChatClient, ServiceError
from securechat.client.collections import DocumentFile
from securechat.envelope import Envelope
from securechat.errors import ErrorCode
from securechat.framing import decode_frames
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.store import SQLiteDocumentStore
from securechat.stream import ErrorEvent, ResponseOpener
from securechat.tenants.policy import TenantPolicy
from tests.client_harness import LocalService, TrustFiles
from tests.fakes import ScriptedEngine
from tests.rag_harness import ANSWER, BREAD, TAXES, TRAINS, client_for, serve_rag

TAMPERED = ErrorCode.COLLECTION_TAMPERED.value
STALE = ErrorCode.STALE_COLLECTION.value


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture
def store(tmp_path: Path) -> SQLiteDocumentStore:
    return SQLiteDocumentStore(tmp_path / "documents.sqlite3")


@pytest.fixture
def service(trust: TrustFiles, embedder: MiniLMEmbedder, store: SQLiteDocumentStore) -> Iterator[LocalService]:
    with serve_rag(trust, embedder, store, ScriptedEngine(ANSWER), num_workers=2) as running:
        yield running


def files(*texts: tuple[str, str]) -> list[DocumentFile]:
    return [DocumentFile.checked(name, text, "text/plain") for name, text in texts]


def rows(store: SQLiteDocumentStore, table: str, where: str = "1 = 1") -> list[tuple[Any, ...]]:
    with store.database.transaction() as tx:
        return [tuple(row) for row in tx.execute(f"SELECT * FROM {table} WHERE {where}").rows]


def put_rows(store: SQLiteDocumentStore, table: str, saved: list[tuple[Any, ...]]) -> None:
    """Write rows back as they were, and move the generation on so workers reload (what an attacker wants)."""
    with store.database.transaction() as tx:
        marks = ", ".join("?" for _ in saved[0])
        tx.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", saved)
        tx.execute("UPDATE collections SET generation = generation + 1")


TABLES = ("collections", "documents", "chunks")


def backup(store: SQLiteDocumentStore) -> dict[str, list[tuple[Any, ...]]]:
    return {table: rows(store, table) for table in TABLES}


def restore(store: SQLiteDocumentStore, saved: dict[str, list[tuple[Any, ...]]]) -> None:
    """The host puts a backup of its database back, whole."""
    with store.database.transaction() as tx:
        for table in reversed(TABLES):
            tx.execute(f"DELETE FROM {table}")
        for table in TABLES:
            if saved[table]:
                marks = ", ".join("?" for _ in saved[table][0])
                tx.executemany(f"INSERT INTO {table} VALUES ({marks})", saved[table])


def manifest_of(store: SQLiteDocumentStore, collection_id: str) -> bytes:
    with store.database.transaction() as tx:
        (manifest,) = tx.execute("SELECT manifest FROM collections WHERE collection_id = ?", (collection_id,)).one()
    return bytes(manifest)


def edit(store: SQLiteDocumentStore, statement: str, params: tuple[Any, ...] = ()) -> None:
    with store.database.transaction() as tx:
        tx.execute(statement, params)
        tx.execute("UPDATE collections SET generation = generation + 1")


def refused_code(call: Any) -> str:
    with pytest.raises(ServiceError) as refused:
        call()
    return str(refused.value.code)


def test_versions_mixed_a_deleted_document_restored_and_chunks_dropped_are_refused(
    service: LocalService, trust: TrustFiles, store: SQLiteDocumentStore, tmp_path: Path
) -> None:
    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        [bread] = client.collections.add(cid, files(("bread.txt", BREAD * 10)))
        doc_id = bread["doc_id"]
        assert bread["num_chunks"] >= 2
        version_1 = rows(store, "chunks", f"doc_id = '{doc_id}'")
        [taxes] = client.collections.add(cid, files(("bread.txt", TAXES * 20)), doc_ids=[doc_id])  # version 2
        assert taxes["num_chunks"] >= 2
        [trains] = client.collections.add(cid, files(("trains.txt", TRAINS)))
        trains_rows = (
            rows(store, "documents", f"doc_id = '{trains['doc_id']}'"),
            rows(store, "chunks", f"doc_id = '{trains['doc_id']}'"),
        )
        client.collections.delete_document(cid, trains["doc_id"])
        honest = rows(store, "chunks")
        assert client.collections.search(cid, "taxes")  # the honest store answers

        # 1. A superseded version-1 chunk in place of its version-2 twin.
        put_rows(store, "chunks", [version_1[1]])
        assert refused_code(lambda: client.collections.search(cid, "taxes")) == TAMPERED
        assert refused_code(lambda: client.chat("taxes?", collection=cid)) == TAMPERED
        put_rows(store, "chunks", honest)
        # 2. The deleted document brought back.
        put_rows(store, "documents", trains_rows[0])
        put_rows(store, "chunks", trains_rows[1])
        assert refused_code(lambda: client.collections.search(cid, "train")) == TAMPERED
        assert refused_code(lambda: client.collections.documents(cid)) == TAMPERED  # the listing too
        edit(store, "DELETE FROM chunks WHERE doc_id = ?", (trains["doc_id"],))
        edit(store, "DELETE FROM documents WHERE doc_id = ?", (trains["doc_id"],))
        # 3. A chunk dropped; 4. the whole document hidden (its rows gone, the manifest left).
        edit(store, "DELETE FROM chunks WHERE doc_id = ? AND chunk_index = 1", (doc_id,))
        assert refused_code(lambda: client.collections.search(cid, "taxes")) == TAMPERED
        edit(store, "DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        assert refused_code(lambda: client.collections.search(cid, "taxes")) == TAMPERED
        # Nothing was lost: the honest rows back, the collection answers again, both workers alike.
        put_rows(store, "chunks", honest)
        for _ in range(2):
            assert [hit.doc_id for hit in client.collections.search(cid, "taxes", top_k=1)] == [doc_id]


def test_a_forged_or_swapped_manifest_is_refused(
    service: LocalService, trust: TrustFiles, store: SQLiteDocumentStore, tmp_path: Path
) -> None:
    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        other = client.collections.create().collection_id
        client.collections.add(cid, files(("bread.txt", BREAD)))
        client.collections.add(other, files(("trains.txt", TRAINS)))
        manifest = manifest_of(store, cid)
        forged = manifest[:32] + manifest[32:].replace(b'"counter":1', b'"counter":9')
        edit(store, "UPDATE collections SET manifest = ?, manifest_counter = 9 WHERE collection_id = ?", (forged, cid))
        assert refused_code(lambda: client.collections.search(cid, "bread")) == TAMPERED
        # Another collection's authentic manifest (same tenant, another key and id) does not fit either.
        edit(store, "UPDATE collections SET manifest = ? WHERE collection_id = ?", (manifest_of(store, other), cid))
        assert refused_code(lambda: client.collections.search(cid, "bread")) == TAMPERED
        edit(
            store, "UPDATE collections SET manifest = ?, manifest_counter = 1 WHERE collection_id = ?", (manifest, cid)
        )
        assert client.collections.search(cid, "bread")


def test_a_rollback_to_an_old_backup_is_stale_for_every_client_that_saw_newer(
    service: LocalService, trust: TrustFiles, store: SQLiteDocumentStore, tmp_path: Path
) -> None:
    """Two machines of one tenant share a key; the host restores last week's backup of its database."""
    with client_for(service, trust, tmp_path) as laptop:
        cid = laptop.collections.create().collection_id
        laptop.collections.add(cid, files(("bread.txt", BREAD)))
        (tmp_path / "desk").mkdir()
        desk_keyring = tmp_path / "desk" / "keyring.json"
        with SecureChatClient(laptop.config, keyring=type(laptop.keyring)(desk_keyring)) as desk:
            desk.keyring.import_entry(laptop.keyring.export(cid))  # counter 1, like the laptop
            last_week = backup(store)  # the host's backup at state 1
            laptop.collections.add(cid, files(("taxes.txt", TAXES)))  # state 2
            assert laptop.keyring.get(cid).counter == 2 and desk.keyring.get(cid).counter == 1
            honest = backup(store)
            restore(store, last_week)  # the host rolls the whole database back
            # The laptop saw state 2: refused by the worker and by its own listing check.
            assert refused_code(lambda: laptop.collections.search(cid, "taxes")) == STALE
            assert refused_code(lambda: laptop.collections.documents(cid)) == STALE
            assert refused_code(lambda: laptop.chat("taxes?", collection=cid)) == STALE
            # The desk was offline and saw only state 1: it cannot tell state 1 is not the newest (documented).
            assert [d.filename for d in desk.collections.documents(cid)] == ["bread.txt"]
            # One honest answer moves the desk on too; from then on the old state is refused for it as well.
            restore(store, honest)
            assert sorted(d.filename for d in desk.collections.documents(cid)) == ["bread.txt", "taxes.txt"]
            assert desk.keyring.get(cid).counter == 2
            restore(store, last_week)
            assert refused_code(lambda: desk.collections.search(cid, "bread")) == STALE
            # Nothing was lost: the honest database back, both answer from state 2.
            restore(store, honest)
            assert len(laptop.collections.search(cid, "taxes", top_k=2)) == 2


def test_a_replayed_ingest_cannot_bring_back_a_deleted_document(
    service: LocalService, trust: TrustFiles, store: SQLiteDocumentStore, tmp_path: Path
) -> None:
    """The host keeps an ingest envelope and, after the document was deleted, runs it on the worker that did
    not see it the first time (that worker's own replay memory is empty): the manifest remembers the ingest."""
    sent: list[bytes] = []

    def keep(request: httpx.Request) -> None:
        if request.url.path.endswith("/documents") and request.method == "POST":
            sent.append(request.read())

    http = httpx.Client(event_hooks={"request": [keep]}, timeout=60)
    with client_for(service, trust, tmp_path) as owner:
        client = SecureChatClient(owner.config, http, keyring=owner.keyring)
        cid = client.collections.create().collection_id
        [trains] = client.collections.add(cid, files(("trains.txt", TRAINS)))
        client.collections.delete_document(cid, trains["doc_id"])
        envelope = Envelope.from_dict(json.loads(sent[-1])["envelope"])
        ran_on = service.pool.dispatched_to[-1]
        other = next(worker for replica, worker in service.pool.workers.items() if replica != ran_on)

        async def replay() -> list[bytes]:
            return [item async for item in other.run(envelope)]

        frames = decode_frames(b"".join(asyncio.run(replay())))
        assert ResponseOpener(b"\0" * 32, envelope.header.request_id).open(frames[0]) == ErrorEvent(
            code="replayed_envelope", request_id=envelope.header.request_id
        )
        assert rows(store, "documents") == []  # nothing stored again
        assert client.collections.documents(cid) == []


def test_listings_show_what_the_worker_sealed_not_what_the_host_says(
    service: LocalService,
    trust: TrustFiles,
    store: SQLiteDocumentStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        [bread] = client.collections.add(cid, files(("bread.txt", BREAD)))
        edit(store, "UPDATE documents SET num_bytes = 999999")  # the host's own figure, not the sealed one
        [listed] = client.collections.documents(cid)
        assert (listed.num_bytes, listed.num_chunks) == (len(BREAD.encode()), bread["num_chunks"])
        monkeypatch.setenv("SECURECHAT_KEYRING", str(client.keyring.path))
    assert main(["docs", "list", cid, *trust.cli_flags(service.url)]) == 0
    assert (
        f"bread.txt  text/plain  {len(BREAD.encode())} bytes  {bread['num_chunks']} chunks" in capsys.readouterr().out
    )
    edit(store, "UPDATE documents SET num_chunks = num_chunks + 1")  # a count that disagrees with the manifest
    assert main(["docs", "list", cid, *trust.cli_flags(service.url)]) == 1
    assert TAMPERED in capsys.readouterr().err


def test_a_zero_limit_means_no_documents_at_all(
    trust: TrustFiles, embedder: MiniLMEmbedder, store: SQLiteDocumentStore, tmp_path: Path
) -> None:
    """A tenant with collections off (max_documents 0) used to get 2^62: zero is zero."""
    for policy, code in [
        (TenantPolicy(max_documents=0, max_chunks=400), "too_many_documents"),
        (TenantPolicy(max_documents=6, max_chunks=0), "too_many_chunks"),
    ]:
        with (
            serve_rag(trust, embedder, store, ScriptedEngine(ANSWER), policy=policy) as service,
            client_for(service, trust, tmp_path) as client,
        ):
            cid = client.collections.create().collection_id
            with pytest.raises(ServiceError) as refused:
                client.collections.add(cid, files(("bread.txt", BREAD)))
            assert (refused.value.status, refused.value.code) == (413, code)
            assert client.collections.documents(cid) == []


def test_a_collection_from_before_manifests_is_taken_as_stored_until_its_first_write(
    service: LocalService, trust: TrustFiles, store: SQLiteDocumentStore, tmp_path: Path
) -> None:
    """An upgraded store: its collections have no manifest, its keyrings no counter. Taken as they are until the
    first ingest or deletion writes a manifest; after that, a vanished manifest is a rollback."""
    with client_for(service, trust, tmp_path) as client:
        cid = client.collections.create().collection_id
        [bread] = client.collections.add(cid, files(("bread.txt", BREAD)))
        edit(store, "UPDATE collections SET manifest = NULL, manifest_counter = 0")  # as the v1 schema left it
        entries = json.loads(client.keyring.path.read_text())
        for entry in entries["entries"]:
            del entry["counter"]  # as a keyring written before counters
        client.keyring.path.write_text(json.dumps(entries))
        assert [hit.doc_id for hit in client.collections.search(cid, "bread", top_k=1)] == [bread["doc_id"]]
        assert [d.doc_id for d in client.collections.documents(cid)] == [bread["doc_id"]]
        client.collections.add(cid, files(("trains.txt", TRAINS)))
        assert client.keyring.get(cid).counter == 1 and manifest_of(store, cid)
        edit(store, "UPDATE collections SET manifest = NULL, manifest_counter = 0")
        assert refused_code(lambda: client.collections.search(cid, "bread")) == STALE
