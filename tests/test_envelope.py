import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

from securechat.envelope import Envelope, EnvelopeHeader, open_request, seal_request
from securechat.errors import InvalidCiphertext
from securechat.keys import RecipientKey, Suite, WorkerKeys

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "securechat_v2.json").read_text())
IDS = {"request_id": "req-0001", "tenant_id": "tenant1", "mode": "plain", "region": "us-west-1"}


@pytest.fixture(scope="module")
def alice() -> WorkerKeys:
    return WorkerKeys.generate()


@pytest.fixture(scope="module")
def bob() -> WorkerKeys:
    return WorkerKeys.generate()


def vector_keys() -> WorkerKeys:
    rsa_key = serialization.load_pem_private_key(VECTORS["rsa_private_pem"].encode(), password=None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    x_key = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["x25519_private_hex"]))
    return WorkerKeys({Suite.HPKE_X25519: x_key, Suite.RSA_OAEP: rsa_key})


@pytest.mark.parametrize("suite", list(Suite))
def test_round_trip_through_the_wire(suite: Suite, alice: WorkerKeys, bob: WorkerKeys) -> None:
    body = "secret prompt ✓".encode()
    sealed = seal_request(body, **IDS, recipients=[*alice.public_keys, *bob.public_keys], suite=suite)
    wire = Envelope.from_bytes(sealed.envelope.to_bytes())
    for keys in (alice, bob):
        opened = open_request(wire, keys)
        assert opened.body == body
        assert opened.dek == sealed.dek
        assert opened.header.request_id == "req-0001"
    assert wire.header.suite is suite
    assert body not in sealed.envelope.to_bytes()


@pytest.mark.parametrize("suite", list(Suite))
def test_wrong_recipient_is_refused(suite: Suite, alice: WorkerKeys, bob: WorkerKeys) -> None:
    sealed = seal_request(b"x", **IDS, recipients=alice.public_keys, suite=suite)
    with pytest.raises(InvalidCiphertext):
        open_request(sealed.envelope, bob)


@pytest.mark.parametrize("suite", list(Suite))
def test_wrapped_key_for_another_id_is_refused(suite: Suite, alice: WorkerKeys, bob: WorkerKeys) -> None:
    """Relabel bob's wrapped DEK as alice's key id: the wrap context binds the key id."""
    sealed = seal_request(b"x", **IDS, recipients=[*alice.public_keys, *bob.public_keys], suite=suite)
    env = sealed.envelope
    a_id, b_id = alice.public_key(suite).key_id, bob.public_key(suite).key_id
    swapped = dict(env.wrapped_keys)
    swapped[a_id], swapped[b_id] = env.wrapped_keys[b_id], env.wrapped_keys[a_id]
    forged = Envelope(env.header_bytes, swapped, env.nonce, env.ciphertext)
    with pytest.raises(InvalidCiphertext):
        open_request(forged, alice)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.mark.parametrize("suite", list(Suite))
@pytest.mark.parametrize("part", ["ciphertext", "tag", "nonce", "wrapped_key"])
def test_tampering_is_refused(suite: Suite, part: str, alice: WorkerKeys) -> None:
    env = seal_request(b"some body", **IDS, recipients=alice.public_keys, suite=suite).envelope
    key_id = alice.public_key(suite).key_id
    ciphertext, nonce, wrapped = env.ciphertext, env.nonce, dict(env.wrapped_keys)
    if part == "ciphertext":
        ciphertext = _flip(ciphertext, 0)
    elif part == "tag":
        ciphertext = _flip(ciphertext, len(ciphertext) - 1)
    elif part == "nonce":
        nonce = _flip(nonce, 0)
    else:
        wrapped[key_id] = _flip(wrapped[key_id], 5)
    with pytest.raises(InvalidCiphertext):
        open_request(Envelope(env.header_bytes, wrapped, nonce, ciphertext), alice)


@pytest.mark.parametrize("suite", list(Suite))
def test_tampered_header_is_refused(suite: Suite, alice: WorkerKeys) -> None:
    env = seal_request(b"body", **IDS, recipients=alice.public_keys, suite=suite).envelope
    header = EnvelopeHeader.from_bytes(env.header_bytes)
    for change in ({"tenant_id": "tenant2"}, {"region": "eu-west-1"}, {"request_id": "req-0002"}):
        fields = {**IDS, **change}
        forged_header = EnvelopeHeader(suite=suite, key_ids=header.key_ids, **fields).to_bytes()
        with pytest.raises(InvalidCiphertext):
            open_request(Envelope(forged_header, env.wrapped_keys, env.nonce, env.ciphertext), alice)


def test_non_canonical_header_is_malformed(alice: WorkerKeys) -> None:
    env = seal_request(b"body", **IDS, recipients=alice.public_keys).envelope
    padded = env.header_bytes.replace(b",", b", ", 1)
    with pytest.raises(ValueError, match="invalid envelope header"):
        Envelope(padded, env.wrapped_keys, env.nonce, env.ciphertext)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("nonce"),
        lambda d: d.update(keys={"x": "AAAA"}),
        lambda d: d.update(ciphertext="not base64!"),
        lambda d: d.update(header="e30="),
        lambda d: d.update(keys=[]),
    ],
)
def test_malformed_envelopes_are_value_errors(mutate: Any, alice: WorkerKeys) -> None:
    data = seal_request(b"body", **IDS, recipients=alice.public_keys).envelope.to_dict()
    mutate(data)
    with pytest.raises(ValueError, match="malformed envelope"):
        Envelope.from_dict(data)


def test_suite_mismatch_between_keys_is_refused(alice: WorkerKeys) -> None:
    with pytest.raises(ValueError, match="no recipient key"):
        seal_request(b"x", **IDS, recipients=[alice.public_key(Suite.RSA_OAEP)], suite=Suite.HPKE_X25519)


def test_substituted_public_key_is_refused(alice: WorkerKeys, bob: WorkerKeys) -> None:
    real = alice.public_key(Suite.HPKE_X25519)
    substituted = RecipientKey(real.suite, real.key_id, bob.public_key(Suite.HPKE_X25519).public_key_der)
    with pytest.raises(ValueError, match="key id"):
        seal_request(b"x", **IDS, recipients=[substituted])


def test_private_keys_cannot_be_pickled_or_printed(alice: WorkerKeys) -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(alice)
    assert "PRIVATE" not in repr(alice)
    for key in alice.public_keys:
        assert set(key.to_dict()) == {"suite", "key_id", "public_key"}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["suite"])
def test_known_answer_vectors(case: dict[str, Any]) -> None:
    keys = vector_keys()
    suite = Suite(case["suite"])
    assert keys.public_key(suite).key_id == case["key_id"]
    body = VECTORS["body"].encode()
    sealed = seal_request(
        body,
        **VECTORS["header"],
        recipients=keys.public_keys,
        suite=suite,
        _dek=bytes.fromhex(VECTORS["dek_hex"]),
        _nonce=bytes.fromhex(VECTORS["nonce_hex"]),
    )
    # With DEK and nonce injected, header and body ciphertext are fixed bytes.
    assert sealed.envelope.header_bytes.decode() == case["header_bytes"]
    assert sealed.envelope.ciphertext.hex() == case["ciphertext_hex"]
    # The stored envelope (its wrapped DEK made with the library's randomness) opens to the stored body.
    opened = open_request(Envelope.from_dict(case["envelope"]), keys)
    assert opened.body == body
    assert opened.dek.hex() == VECTORS["dek_hex"]
