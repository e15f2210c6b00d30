import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hpke

from securechat.suites import (
    DEFAULT_SUITES,
    HYBRID_PUBLIC_BYTES,
    Suite,
    generate_key_pair,
    hybrid_private_key,
    load_public_key,
    suite_of,
    unwrap,
    wrap,
)

DRAFT_VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "hpke_pq_mlkem768x25519.json").read_text()
)
KDFS = {0x0001: hpke.KDF.HKDF_SHA256, 0x0011: hpke.KDF.SHAKE256}
AEADS = {0x0003: hpke.AEAD.CHACHA20_POLY1305}
CONTEXT = b"securechat/test\x00context"


def test_only_the_hybrid_is_post_quantum_and_it_is_the_default() -> None:
    assert DEFAULT_SUITES == (Suite.HPKE_MLKEM768_X25519,)
    assert [suite for suite in Suite if suite.post_quantum] == [Suite.HPKE_MLKEM768_X25519]


@pytest.mark.parametrize("vector", DRAFT_VECTORS, ids=lambda v: f"kdf{int(v['kdf_id']):#06x}")
def test_draft_ietf_hpke_pq_vectors_open_through_the_workers_key_path(vector: dict[str, Any]) -> None:
    """draft-ietf-hpke-pq, KEM 0x647a: the worker's seed expansion gives the vector's public key, and the key it
    makes opens the vector's ciphertext (the KEM is the one our suite uses; the vectors' KDF/AEAD differ)."""
    assert int(vector["kem_id"]) == 0x647A and int(vector["mode"]) == 0
    private_key, public_bytes = hybrid_private_key(bytes.fromhex(vector["skRm"]))
    assert public_bytes.hex() == vector["pkRm"]
    assert len(bytes.fromhex(vector["enc"])) == 1120
    loaded = load_public_key(Suite.HPKE_MLKEM768_X25519, public_bytes)
    assert suite_of(loaded) is Suite.HPKE_MLKEM768_X25519
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, KDFS[int(vector["kdf_id"])], AEADS[int(vector["aead_id"])])
    first = vector["encryptions"][0]
    # The public decrypt() takes no AAD and every draft encryption carries one: the library's own AAD entry
    # point (what cryptography's tests use for the RFC 9180 vectors) decrypts the single-shot first message.
    plaintext = rust_openssl.hpke._decrypt_with_aad(
        suite,
        bytes.fromhex(vector["enc"]) + bytes.fromhex(first["ct"]),
        private_key,
        info=bytes.fromhex(vector["info"]),
        aad=bytes.fromhex(first["aad"]),
    )
    assert plaintext.hex() == first["pt"]
    tampered = bytearray(bytes.fromhex(vector["enc"]))
    tampered[0] ^= 1
    with pytest.raises(InvalidTag):  # an altered KEM ciphertext decapsulates to another secret: the AEAD fails
        rust_openssl.hpke._decrypt_with_aad(
            suite,
            bytes(tampered) + bytes.fromhex(first["ct"]),
            private_key,
            info=bytes.fromhex(vector["info"]),
            aad=bytes.fromhex(first["aad"]),
        )


@pytest.mark.parametrize(("suite", "wrap_bytes"), [(Suite.HPKE_MLKEM768_X25519, 1168), (Suite.HPKE_X25519, 80)])
def test_wrap_sizes_and_round_trip(suite: Suite, wrap_bytes: int) -> None:
    private_key, public_bytes = generate_key_pair(suite)
    dek = os.urandom(32)
    wrapped = wrap(suite, load_public_key(suite, public_bytes), dek, CONTEXT)
    assert len(wrapped) == wrap_bytes
    assert unwrap(suite, private_key, wrapped, CONTEXT) == dek
    with pytest.raises((InvalidTag, ValueError)):
        unwrap(suite, private_key, wrapped, CONTEXT + b"!")  # the context binds where a wrap may be opened


def test_keys_are_only_used_in_their_own_suite() -> None:
    hybrid_private, hybrid_public = generate_key_pair(Suite.HPKE_MLKEM768_X25519)
    classical_private, classical_public = generate_key_pair(Suite.HPKE_X25519)
    assert len(hybrid_public) == HYBRID_PUBLIC_BYTES
    with pytest.raises(ValueError, match="suite"):
        wrap(Suite.HPKE_X25519, load_public_key(Suite.HPKE_MLKEM768_X25519, hybrid_public), b"k" * 32, CONTEXT)
    wrapped = wrap(Suite.HPKE_X25519, load_public_key(Suite.HPKE_X25519, classical_public), b"k" * 32, CONTEXT)
    with pytest.raises(ValueError, match="suite"):
        unwrap(Suite.HPKE_MLKEM768_X25519, classical_private, wrapped, CONTEXT)
    with pytest.raises(ValueError, match="suite"):
        unwrap(Suite.HPKE_X25519, hybrid_private, wrapped, CONTEXT)


@pytest.mark.parametrize("encoded", [b"", b"\x00" * (HYBRID_PUBLIC_BYTES - 1), b"\x00" * (HYBRID_PUBLIC_BYTES + 1)])
def test_malformed_hybrid_public_keys_are_refused(encoded: bytes) -> None:
    with pytest.raises(ValueError, match="suite"):
        load_public_key(Suite.HPKE_MLKEM768_X25519, encoded)


def test_hybrid_seeds_are_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        hybrid_private_key(b"\x00" * 31)
