"""Collection blobs open only under their key, for their tenant, collection, document, version and position."""

from __future__ import annotations

import numpy as np
import pytest

from securechat.errors import InvalidCiphertext
from securechat.rag.keys import CollectionKey, InvalidCollectionKey
from securechat.rag.sealing import CollectionCipher

KEY = CollectionKey.generate()


def cipher(key: CollectionKey = KEY, tenant: str = "t1", collection: str = "c1") -> CollectionCipher:
    return CollectionCipher(key, tenant, collection)


def test_round_trips() -> None:
    vector = np.arange(384, dtype=np.float32) / 384
    assert cipher().open_chunk("d1", 3, 7, cipher().seal_chunk("d1", 3, 7, "héllo ✓")) == "héllo ✓"
    np.testing.assert_array_equal(
        cipher().open_embedding("d1", 3, 7, cipher().seal_embedding("d1", 3, 7, vector)), vector
    )
    assert cipher().open_meta("d1", 3, cipher().seal_meta("d1", 3, {"filename": "a.md"})) == {"filename": "a.md"}


@pytest.mark.parametrize(
    "opener",
    [
        lambda blob: cipher(CollectionKey.generate()).open_chunk("d1", 3, 7, blob),  # another key
        lambda blob: cipher(tenant="t2").open_chunk("d1", 3, 7, blob),  # another tenant, same key
        lambda blob: cipher(collection="c2").open_chunk("d1", 3, 7, blob),  # another collection, same key
        lambda blob: cipher().open_chunk("d2", 3, 7, blob),  # moved to another document
        lambda blob: cipher().open_chunk("d1", 4, 7, blob),  # replayed into another version
        lambda blob: cipher().open_chunk("d1", 3, 8, blob),  # moved to another position
        lambda blob: cipher().open_meta("d1", 3, blob),  # passed off as another field
        lambda blob: cipher().open_chunk("d1", 3, 7, blob[:-1] + bytes([blob[-1] ^ 1])),  # tampered
        lambda blob: cipher().open_chunk("d1", 3, 7, blob[:20]),  # truncated
    ],
    ids=["key", "tenant", "collection", "document", "version", "index", "field", "tampered", "truncated"],
)
def test_a_blob_in_the_wrong_place_does_not_open(opener) -> None:  # type: ignore[no-untyped-def]
    blob = cipher().seal_chunk("d1", 3, 7, "secret text")
    with pytest.raises(InvalidCiphertext):
        opener(blob)


def test_sealing_is_randomised() -> None:
    assert cipher().seal_chunk("d1", 1, 0, "same") != cipher().seal_chunk("d1", 1, 0, "same")


def test_keys_parse_strictly_and_never_print() -> None:
    assert CollectionKey.from_b64(KEY.to_b64()) == KEY
    assert KEY.to_b64() not in repr(KEY)
    for bad in ("", "not base64!", "AAAA", 42):
        with pytest.raises(InvalidCollectionKey):
            CollectionKey.from_b64(bad)


def test_subkeys_and_fingerprints_separate_purposes_and_keys() -> None:
    other = CollectionKey.generate()
    assert KEY.subkey("blobs", "t1", "c1") != KEY.subkey("blobs", "t1", "c2") != other.subkey("blobs", "t1", "c2")
    assert KEY.fingerprint() != other.fingerprint() and KEY.to_b64() not in KEY.fingerprint()
