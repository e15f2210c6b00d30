import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

from securechat.envelope import ENVELOPE_VERSION, Envelope, EnvelopeHeader, open_request, seal_request
from securechat.errors import InvalidCiphertext
from securechat.keys import RecipientKey, Suite, WorkerKeys
from securechat.suites import classical_key_pair, hybrid_private_key

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / f"securechat_v{ENVELOPE_VERSION}.json").read_text()
)
IDS = {"request_id": "req-0001", "tenant_id": "tenant1", "mode": "plain", "region": "us-west-1"}
NOW = 1_800_000_000
EXPIRES = NOW + 120  # what seal_request's default lifetime gives at NOW
ALL_SUITES = tuple(Suite)


@pytest.fixture(scope="module")
def alice() -> WorkerKeys:
    return WorkerKeys.generate(ALL_SUITES)


@pytest.fixture(scope="module")
def bob() -> WorkerKeys:
    return WorkerKeys.generate(ALL_SUITES)


def vector_keys() -> WorkerKeys:
    rsa_key = serialization.load_pem_private_key(VECTORS["rsa_private_pem"].encode(), password=None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    x_key = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["x25519_private_hex"]))
    return WorkerKeys(
        {
            Suite.HPKE_MLKEM768_X25519: hybrid_private_key(bytes.fromhex(VECTORS["hybrid_seed_hex"])),
            Suite.HPKE_X25519: classical_key_pair(x_key),
            Suite.RSA_OAEP: classical_key_pair(rsa_key),
        }
    )


def test_workers_make_only_the_post_quantum_hybrid_by_default() -> None:
    keys = WorkerKeys.generate()
    assert [key.suite for key in keys.public_keys] == [Suite.HPKE_MLKEM768_X25519]
    assert len(keys.public_keys[0].public_key_bytes) == 1216  # ML-KEM-768 encapsulation key || X25519 key


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_round_trip_through_the_wire(suite: Suite, alice: WorkerKeys, bob: WorkerKeys) -> None:
    body = "secret prompt ✓".encode()
    recipients = [alice.public_key(suite), bob.public_key(suite)]
    sealed = seal_request(body, **IDS, recipients=recipients)
    wire = Envelope.from_bytes(sealed.envelope.to_bytes())
    for keys in (alice, bob):
        opened = open_request(wire, keys)
        assert opened.body == body
        assert opened.dek == sealed.dek
        assert opened.header.request_id == "req-0001"
    assert {wire.header.suite_of(key.key_id) for key in recipients} == {suite}
    assert body not in sealed.envelope.to_bytes()


def test_one_envelope_may_wrap_for_workers_of_different_suites(alice: WorkerKeys) -> None:
    """During a rolling upgrade a compatibility profile may have classical and hybrid workers side by side."""
    classical = WorkerKeys.generate((Suite.HPKE_X25519,))
    recipients = [alice.public_key(Suite.HPKE_MLKEM768_X25519), *classical.public_keys]
    wire = Envelope.from_bytes(seal_request(b"body", **IDS, recipients=recipients).envelope.to_bytes())
    assert dict(wire.header.wraps) == {key.key_id: key.suite for key in recipients}
    assert open_request(wire, alice).body == open_request(wire, classical).body == b"body"


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_wrong_recipient_is_refused(suite: Suite, alice: WorkerKeys, bob: WorkerKeys) -> None:
    sealed = seal_request(b"x", **IDS, recipients=[alice.public_key(suite)])
    with pytest.raises(InvalidCiphertext):
        open_request(sealed.envelope, bob)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_wrapped_key_for_another_id_is_refused(suite: Suite, alice: WorkerKeys, bob: WorkerKeys) -> None:
    """Relabel bob's wrapped DEK as alice's key id: the wrap context binds the key id."""
    sealed = seal_request(b"x", **IDS, recipients=[alice.public_key(suite), bob.public_key(suite)])
    env = sealed.envelope
    a_id, b_id = alice.public_key(suite).key_id, bob.public_key(suite).key_id
    swapped = dict(env.wrapped_keys)
    swapped[a_id], swapped[b_id] = env.wrapped_keys[b_id], env.wrapped_keys[a_id]
    forged = Envelope(env.header_bytes, swapped, env.nonce, env.ciphertext)
    with pytest.raises(InvalidCiphertext):
        open_request(forged, alice)


def test_a_stripped_wrap_is_detected(alice: WorkerKeys, bob: WorkerKeys) -> None:
    """The host removes bob's wrap from the header and the keys: alice's opening sees the header changed."""
    suite = Suite.HPKE_MLKEM768_X25519
    env = seal_request(b"x", **IDS, recipients=[alice.public_key(suite), bob.public_key(suite)]).envelope
    a_id = alice.public_key(suite).key_id
    stripped = EnvelopeHeader(**IDS, wraps=((a_id, suite),), expires_at=env.header.expires_at).to_bytes()
    forged = Envelope(stripped, {a_id: env.wrapped_keys[a_id]}, env.nonce, env.ciphertext)
    with pytest.raises(InvalidCiphertext):
        open_request(forged, alice)
    with pytest.raises(ValueError, match="envelope keys do not match its header"):
        Envelope(env.header_bytes, {a_id: env.wrapped_keys[a_id]}, env.nonce, env.ciphertext)


def test_a_wrap_relabelled_to_a_classical_suite_is_refused(alice: WorkerKeys) -> None:
    """The header names the hybrid wrap as X25519: the worker tries a key only in the suite it was made for."""
    hybrid, classical = alice.public_key(Suite.HPKE_MLKEM768_X25519), alice.public_key(Suite.HPKE_X25519)
    env = seal_request(b"x", **IDS, recipients=[hybrid], _now=NOW).envelope
    relabelled = EnvelopeHeader(**IDS, wraps=((hybrid.key_id, Suite.HPKE_X25519),), expires_at=EXPIRES).to_bytes()
    with pytest.raises(InvalidCiphertext):
        open_request(Envelope(relabelled, env.wrapped_keys, env.nonce, env.ciphertext), alice)
    # Nor can the host swap in a wrap of its own for the worker's classical key: it does not know the DEK.
    own = seal_request(b"other", **IDS, recipients=[classical], _now=NOW).envelope
    swapped_header = EnvelopeHeader(**IDS, wraps=((classical.key_id, Suite.HPKE_X25519),), expires_at=EXPIRES)
    swapped = Envelope(swapped_header.to_bytes(), own.wrapped_keys, env.nonce, env.ciphertext)
    with pytest.raises(InvalidCiphertext):
        open_request(swapped, alice)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.mark.parametrize("suite", ALL_SUITES)
@pytest.mark.parametrize("part", ["ciphertext", "tag", "nonce", "wrapped_key"])
def test_tampering_is_refused(suite: Suite, part: str, alice: WorkerKeys) -> None:
    env = seal_request(b"some body", **IDS, recipients=[alice.public_key(suite)]).envelope
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


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_tampered_header_is_refused(suite: Suite, alice: WorkerKeys) -> None:
    env = seal_request(b"body", **IDS, recipients=[alice.public_key(suite)]).envelope
    header = EnvelopeHeader.from_bytes(env.header_bytes)
    for change in (
        {"tenant_id": "tenant2"},
        {"region": "eu-west-1"},
        {"request_id": "req-0002"},
        {"expires_at": header.expires_at + 3600},  # a host that wants more time to replay it
    ):
        fields: dict[str, Any] = {**IDS, "expires_at": header.expires_at, **change}
        forged_header = EnvelopeHeader(wraps=header.wraps, **fields).to_bytes()
        with pytest.raises(InvalidCiphertext):
            open_request(Envelope(forged_header, env.wrapped_keys, env.nonce, env.ciphertext), alice)


def test_an_envelope_runs_for_its_lifetime_from_sealing() -> None:
    key = WorkerKeys.generate().public_keys[0]
    assert seal_request(b"x", **IDS, recipients=[key], _now=NOW).envelope.header.expires_at == EXPIRES
    assert seal_request(b"x", **IDS, recipients=[key], ttl_s=30, _now=NOW + 0.5).envelope.header.expires_at == NOW + 31
    for bad in (0, -1, True, 1.5, 2**53):
        with pytest.raises(ValueError, match="invalid envelope header"):
            EnvelopeHeader(**IDS, wraps=((key.key_id, key.suite),), expires_at=bad)  # type: ignore[arg-type]


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


def test_no_or_repeated_recipients_are_refused(alice: WorkerKeys) -> None:
    with pytest.raises(ValueError, match="recipients"):
        seal_request(b"x", **IDS, recipients=[])
    key = alice.public_key(Suite.HPKE_MLKEM768_X25519)
    with pytest.raises(ValueError, match="recipients"):
        seal_request(b"x", **IDS, recipients=[key, key])


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_substituted_public_key_is_refused(suite: Suite, alice: WorkerKeys, bob: WorkerKeys) -> None:
    real = alice.public_key(suite)
    substituted = RecipientKey(real.suite, real.key_id, bob.public_key(suite).public_key_bytes)
    with pytest.raises(ValueError, match="key id"):
        seal_request(b"x", **IDS, recipients=[substituted])


def test_a_key_claiming_another_suite_is_refused(alice: WorkerKeys) -> None:
    """An X25519 key presented as a hybrid one (or the reverse) does not load, so nothing is sealed to it."""
    for real, claimed in (
        (Suite.HPKE_X25519, Suite.HPKE_MLKEM768_X25519),
        (Suite.HPKE_MLKEM768_X25519, Suite.HPKE_X25519),
        (Suite.HPKE_X25519, Suite.RSA_OAEP),
    ):
        key = alice.public_key(real)
        with pytest.raises(ValueError, match="suite"):
            seal_request(b"x", **IDS, recipients=[RecipientKey(claimed, key.key_id, key.public_key_bytes)])


def test_private_keys_cannot_be_pickled_or_printed(alice: WorkerKeys) -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(alice)
    assert "PRIVATE" not in repr(alice)
    for key in alice.public_keys:
        assert set(key.to_dict()) == {"suite", "key_id", "public_key"}


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["suite"])
def test_known_answer_vectors(case: dict[str, Any]) -> None:
    assert VECTORS["version"] == ENVELOPE_VERSION
    keys = vector_keys()
    suite = Suite(case["suite"])
    assert keys.public_key(suite).key_id == case["key_id"]
    assert keys.public_key(suite).public_key_bytes.hex() == case["public_key_hex"]
    body = VECTORS["body"].encode()
    sealed = seal_request(
        body,
        **VECTORS["header"],
        recipients=[keys.public_key(suite)],
        _dek=bytes.fromhex(VECTORS["dek_hex"]),
        _nonce=bytes.fromhex(VECTORS["nonce_hex"]),
        _now=VECTORS["sealed_at"],
    )
    # With DEK and nonce injected, header and body ciphertext are fixed bytes.
    assert sealed.envelope.header_bytes.decode() == case["header_bytes"]
    assert sealed.envelope.ciphertext.hex() == case["ciphertext_hex"]
    # The stored envelope (its wrapped DEK made with the library's randomness) opens to the stored body.
    opened = open_request(Envelope.from_dict(case["envelope"]), keys)
    assert opened.body == body
    assert opened.dek.hex() == VECTORS["dek_hex"]
