"""The host's store of sealed collections: versioned, concurrent-safe, limited, deletable, persistent, 0600.

Every behaviour test runs on both backends: an SQLite file and a real PostgreSQL server (``postgres_url``).
Manifests are opaque to the store (only key holders can read or write them): here they are stand-ins that say
their counter."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.db import DatabaseSettings
from securechat.errors import ErrorCode
from securechat.rag.store import (
    ManifestUpdate,
    SealedChunk,
    SealedDocument,
    SQLDocumentStore,
    SQLiteDocumentStore,
    StoreError,
    StoreLimits,
    open_document_store,
)

LIMITS = StoreLimits(max_documents=100, max_chunks=1000)


def doc(doc_id: str, num_chunks: int = 2, tag: bytes = b"") -> SealedDocument:
    chunks = tuple(SealedChunk(i, b"text" + tag + bytes([i]), b"vec" + tag + bytes([i])) for i in range(num_chunks))
    return SealedDocument(doc_id, b"meta" + tag, chunks)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> DatabaseSettings:
    return DatabaseSettings(url=request.getfixturevalue("postgres_url") if request.param == "postgresql" else None)


@pytest.fixture
def store(settings: DatabaseSettings, tmp_path: Path) -> Iterator[SQLDocumentStore]:
    store = open_document_store(settings, tmp_path / "docs.sqlite3")
    store.create_collection("t1", "c1")
    yield store
    store.close()


def next_update(store: SQLDocumentStore, collection_id: str = "c1") -> ManifestUpdate:
    stored = store.list_documents("t1", collection_id).manifest
    counter = 0 if stored is None else int(stored.decode().split(":")[1])
    return ManifestUpdate(f"manifest:{counter + 1}".encode(), counter + 1)


def ingest(store: SQLDocumentStore, *docs: SealedDocument, limits: StoreLimits = LIMITS) -> int:
    """As a worker does: a version, then commit with the next manifest, again if another writer came first."""
    version = store.begin_ingest("t1", "c1")
    while True:
        try:
            store.commit("t1", "c1", version, docs, limits, next_update(store))
            return version
        except StoreError as refused:
            if refused.code is not ErrorCode.COLLECTION_CHANGED:
                raise


def test_the_file_is_private(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "docs.sqlite3")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_ingest_then_load_the_latest_version_of_every_document(store: SQLDocumentStore) -> None:
    first = ingest(store, doc("a", 2, b"1"), doc("b", 1))
    second = ingest(store, doc("a", 3, b"2"))  # a new version of "a" replaces all of the old one
    assert second > first
    loaded = store.load("t1", "c1")
    assert sorted((c.doc_id, c.version, c.index) for c in loaded.chunks) == [
        ("a", second, 0),
        ("a", second, 1),
        ("a", second, 2),
        ("b", first, 0),
    ]
    assert all(c.sealed_text.startswith(b"text2") for c in loaded.chunks if c.doc_id == "a")
    info = store.collection("t1", "c1")
    assert (info.num_documents, info.num_chunks) == (2, 4) and info.generation == loaded.generation


def test_a_write_that_does_not_follow_the_stored_manifest_is_refused_whole(store: SQLDocumentStore) -> None:
    """Compare and swap on the manifest's counter: a writer that read an older state must read it again."""
    ingest(store, doc("a", 1))
    generation = store.generation("t1", "c1")
    version = store.begin_ingest("t1", "c1")
    for counter in (1, 3):  # the stored counter is 1: only 2 follows it
        with pytest.raises(StoreError) as changed:
            store.commit("t1", "c1", version, [doc("b", 1)], LIMITS, ManifestUpdate(b"manifest:x", counter))
        assert changed.value.code is ErrorCode.COLLECTION_CHANGED
        with pytest.raises(StoreError) as changed:
            store.delete_document("t1", "c1", "a", ManifestUpdate(b"manifest:x", counter))
        assert changed.value.code is ErrorCode.COLLECTION_CHANGED
    loaded = store.load("t1", "c1")
    assert {c.doc_id for c in loaded.chunks} == {"a"} and loaded.manifest == b"manifest:1"
    assert loaded.generation == generation


def test_the_manifest_comes_with_the_blobs_and_the_listing_in_one_read(store: SQLDocumentStore) -> None:
    assert store.load("t1", "c1").manifest is None and store.list_documents("t1", "c1").manifest is None
    ingest(store, doc("a", 2, b"1"), doc("b", 1))
    listing = store.list_documents("t1", "c1")
    assert listing.manifest == store.load("t1", "c1").manifest == b"manifest:1"
    assert [(d.doc_id, d.num_chunks, d.sealed_meta) for d in listing.documents] == [
        ("a", 2, b"meta1"),
        ("b", 1, b"meta"),
    ]


def test_concurrent_ingests_into_one_collection_lose_nothing(store: SQLDocumentStore) -> None:
    """Each retries after another came first (as workers do); every one is kept, the counter counts them all."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            ingest(store, doc(f"d{i}", 2))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    loaded = store.load("t1", "c1")
    assert {c.doc_id for c in loaded.chunks} == {f"d{i}" for i in range(16)}
    assert store.collection("t1", "c1").num_chunks == 32 and loaded.manifest == b"manifest:16"


@pytest.mark.parametrize(
    ("limits", "code"),
    [(StoreLimits(2, 1000), ErrorCode.TOO_MANY_DOCUMENTS), (StoreLimits(100, 5), ErrorCode.TOO_MANY_CHUNKS)],
)
def test_limits_refuse_the_whole_commit(store: SQLDocumentStore, limits: StoreLimits, code: ErrorCode) -> None:
    ingest(store, doc("a", 2))
    generation = store.generation("t1", "c1")
    with pytest.raises(StoreError) as refused:
        ingest(store, doc("b", 2), doc("c", 2), limits=limits)
    assert refused.value.code is code
    loaded = store.load("t1", "c1")
    assert {c.doc_id for c in loaded.chunks} == {"a"}  # nothing of the refused ingest, its manifest neither
    assert store.generation("t1", "c1") == generation and loaded.manifest == b"manifest:1"


def test_limits_count_every_collection_of_the_tenant(store: SQLDocumentStore) -> None:
    store.create_collection("t1", "c2")
    ingest(store, doc("a", 3))
    version = store.begin_ingest("t1", "c2")
    with pytest.raises(StoreError):
        store.commit("t1", "c2", version, [doc("b", 3)], StoreLimits(100, 5), next_update(store, "c2"))


def test_deletions_remove_blobs_and_move_the_generation(store: SQLDocumentStore) -> None:
    ingest(store, doc("a"), doc("b"))
    generation = store.generation("t1", "c1")
    store.delete_document("t1", "c1", "a", next_update(store))
    loaded = store.load("t1", "c1")
    assert {c.doc_id for c in loaded.chunks} == {"b"} and loaded.manifest == b"manifest:2"
    assert store.generation("t1", "c1") > generation
    with pytest.raises(StoreError) as unknown:
        store.delete_document("t1", "c1", "a", next_update(store))
    assert unknown.value.code is ErrorCode.UNKNOWN_DOCUMENT
    assert store.load("t1", "c1").manifest == b"manifest:2"  # the refused deletion's manifest is not kept
    store.delete_collection("t1", "c1")
    with pytest.raises(StoreError) as gone:
        store.load("t1", "c1")
    assert gone.value.code is ErrorCode.UNKNOWN_COLLECTION
    with store.database.transaction() as tx:
        assert [tuple(row) for row in tx.execute("SELECT COUNT(*) FROM chunks").rows] == [(0,)]


def test_tenants_never_reach_each_others_collections(store: SQLDocumentStore) -> None:
    ingest(store, doc("a"))
    for call in (
        lambda: store.load("t2", "c1"),
        lambda: store.list_documents("t2", "c1"),
        lambda: store.begin_ingest("t2", "c1"),
        lambda: store.delete_collection("t2", "c1"),
        lambda: store.delete_document("t2", "c1", "a", ManifestUpdate(b"manifest:2", 2)),
    ):
        with pytest.raises(StoreError) as refused:
            call()
        assert refused.value.code is ErrorCode.FORBIDDEN
    assert store.list_collections("t2") == []
    with pytest.raises(StoreError) as taken:
        store.create_collection("t2", "c1")
    assert taken.value.code is ErrorCode.COLLECTION_EXISTS


def test_the_store_survives_a_restart(store: SQLDocumentStore, settings: DatabaseSettings, tmp_path: Path) -> None:
    version = ingest(store, doc("a", 2))
    store.close()
    reopened = open_document_store(settings, tmp_path / "docs.sqlite3")
    assert [(c.doc_id, c.version) for c in reopened.load("t1", "c1").chunks] == [("a", version), ("a", version)]
    assert reopened.begin_ingest("t1", "c1") > version  # versions keep growing across restarts


def test_store_errors_survive_pickling_with_their_code() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(StoreError(ErrorCode.TOO_MANY_CHUNKS)))
    assert copy.code is ErrorCode.TOO_MANY_CHUNKS and str(copy) == "too_many_chunks"


def test_two_replicas_cannot_both_pass_the_tenants_limit(settings: DatabaseSettings, tmp_path: Path) -> None:
    """Two store replicas (with PostgreSQL: two connections, as on two nodes) commit into two collections of
    one tenant at once; with room for 3 documents, exactly one commit of 2 documents is kept."""
    replicas = [open_document_store(settings, tmp_path / "docs.sqlite3") for _ in range(2)]
    for index, replica in enumerate(replicas):
        replica.create_collection("t1", f"c{index}")
    limits = StoreLimits(max_documents=3, max_chunks=1000)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def commit(index: int) -> None:
        replica = replicas[index]
        version = replica.begin_ingest("t1", f"c{index}")
        barrier.wait()
        try:
            update = ManifestUpdate(b"manifest:1", 1)
            replica.commit("t1", f"c{index}", version, [doc(f"d{index}a"), doc(f"d{index}b")], limits, update)
            outcomes.append("kept")
        except StoreError as refused:
            outcomes.append(refused.code.value)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["kept", "too_many_documents"]
    assert sum(replicas[0].collection("t1", f"c{i}").num_documents for i in range(2)) == 2
    for replica in replicas:
        replica.close()


def test_a_store_from_before_manifests_is_upgraded_in_place(tmp_path: Path) -> None:
    """A documents database written with the first schema: opened by this release, its rows stay and every
    collection has no manifest yet (counter 0), which the next write fills in."""
    from securechat.db.sqlite import SQLiteDatabase
    from securechat.rag.store import _V1, COMPONENT

    path = tmp_path / "old.sqlite3"
    old = SQLiteDatabase(path)
    assert old.migrate(COMPONENT, (_V1,)) == 1
    with old.transaction() as tx:
        tx.execute("INSERT INTO collections (collection_id, tenant_id, created_at) VALUES ('c1', 't1', 0)")
        tx.execute("INSERT INTO documents VALUES ('c1', 'a', 1, 0, 1, 10, ?)", (b"meta",))
        tx.execute("INSERT INTO chunks VALUES ('c1', 'a', 1, 0, ?, ?)", (b"text", b"vec"))
    old.close()
    store = SQLiteDocumentStore(path)
    loaded = store.load("t1", "c1")
    assert [(c.doc_id, c.version, c.index) for c in loaded.chunks] == [("a", 1, 0)] and loaded.manifest is None
    store.delete_document("t1", "c1", "a", ManifestUpdate(b"manifest:1", 1))
    assert store.load("t1", "c1").manifest == b"manifest:1"
    store.close()
