"""The witness: cosigns only checkpoints that extend what it cosigned before, in its own state, over HTTP too."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.transparency import (
    AddCheckpointRequest,
    Checkpoint,
    NoteSigner,
    ReleaseLog,
    SignatureType,
    SqliteWitnessState,
    Witness,
    WitnessError,
    WitnessFailure,
    WitnessRefusal,
    cosign_with_witness,
)
from securechat.transparency.note import format_note, parse_note, parse_signature_line
from securechat.transparency.note_keys import cosignature_timestamp
from tests.transparency_harness import fill, log_signer, new_log, new_witness, serving, witness_signer


@pytest.fixture
def release_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _request(log: ReleaseLog, old_size: int) -> AddCheckpointRequest:
    note = log.latest_checkpoint()
    size = Checkpoint.from_text(parse_note(note).text).size
    return AddCheckpointRequest(old_size, tuple(log.consistency_proof(old_size, size)), note)


def _refusal(witness: Witness, request: AddCheckpointRequest) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as refused:
        witness.add_checkpoint(request)
    return refused.value


def test_request_body_round_trips_in_the_spec_format(tmp_path: Path, release_key: ed25519.Ed25519PrivateKey) -> None:
    log, signer = new_log(tmp_path), log_signer()
    fill(log, release_key, range(5))
    log.sign_checkpoint(signer)
    request = _request(log, 3)
    body = request.to_body()
    assert body.startswith(b"old 3\n") and b"\n\n" + log.latest_checkpoint().encode() in body
    assert AddCheckpointRequest.from_body(body) == request
    for bad in [b"old 03\n\n" + body.split(b"\n\n", 1)[1], b"old 3\nnot base64\n\nx", b"old 3", b"\xff", b"new 1\n\nx"]:
        with pytest.raises(WitnessRefusal) as refused:
            AddCheckpointRequest.from_body(bad)
        assert refused.value.status_code == 400


def test_first_checkpoint_is_trusted_then_only_extensions(
    tmp_path: Path, release_key: ed25519.Ed25519PrivateKey
) -> None:
    log, signer = new_log(tmp_path), log_signer()
    witness = new_witness(tmp_path, signer)
    fill(log, release_key, range(2))
    log.sign_checkpoint(signer)
    line = witness.add_checkpoint(_request(log, 0))
    cosignature = parse_signature_line(line.rstrip("\n"))
    assert witness.verifier.verify(parse_note(log.latest_checkpoint()).text, cosignature)
    assert cosignature_timestamp(cosignature) > 1_600_000_000

    fill(log, release_key, range(2, 5))
    log.sign_checkpoint(signer)
    assert _refusal(witness, _request(log, 0)).reason is WitnessFailure.OLD_SIZE_MISMATCH
    assert _refusal(witness, _request(log, 0)).latest_size == 2  # tells the log where to prove from
    witness.add_checkpoint(_request(log, 2))
    witness.add_checkpoint(_request(log, 5))  # a log that stops growing is cosigned again


def test_witness_refuses_forks_rewrites_and_rollbacks(tmp_path: Path, release_key: ed25519.Ed25519PrivateKey) -> None:
    signer = log_signer()
    honest, fork = new_log(tmp_path, "honest.sqlite3"), new_log(tmp_path, "fork.sqlite3")
    fill(honest, release_key, range(3))
    fill(fork, release_key, [0, 1, 66])  # same key, same origin, different third release
    honest.sign_checkpoint(signer)
    fork.sign_checkpoint(signer)
    witness = new_witness(tmp_path, signer)
    witness.add_checkpoint(_request(honest, 0))

    split = _refusal(witness, _request(fork, 3))
    assert (split.reason, split.status_code, split.latest_size) == (WitnessFailure.FORK, 409, 3)

    fill(fork, release_key, range(3, 5))
    fork.sign_checkpoint(signer)
    rewritten = _refusal(witness, _request(fork, 3))  # a valid proof, but of the fork's own history
    assert (rewritten.reason, rewritten.status_code) == (WitnessFailure.INCONSISTENT, 422)

    fill(honest, release_key, range(3, 6))
    honest.sign_checkpoint(signer)
    witness.add_checkpoint(_request(honest, 3))
    rolled_back = honest.checkpoint_at(3)
    stale = _refusal(witness, AddCheckpointRequest(6, (), rolled_back))
    assert (stale.reason, stale.status_code) == (WitnessFailure.ROLLBACK, 400)
    assert _refusal(witness, AddCheckpointRequest(3, (), rolled_back)).latest_size == 6


def test_witness_refuses_unknown_logs_and_bad_signatures(
    tmp_path: Path, release_key: ed25519.Ed25519PrivateKey
) -> None:
    signer = log_signer()
    witness = new_witness(tmp_path, signer)
    other = new_log(tmp_path, "other.sqlite3", origin="other.example/log")
    fill(other, release_key, range(1))
    other.sign_checkpoint(log_signer("other.example/log"))
    assert _refusal(witness, _request(other, 0)).status_code == 404

    impostor = new_log(tmp_path, "impostor.sqlite3")
    fill(impostor, release_key, range(1))
    impostor.sign_checkpoint(log_signer())  # right origin, another key
    refusal = _refusal(witness, _request(impostor, 0))
    assert (refusal.reason, refusal.status_code) == (WitnessFailure.BAD_LOG_SIGNATURE, 403)

    log = new_log(tmp_path)
    fill(log, release_key, range(2))
    note = parse_note(log.sign_checkpoint(signer))
    lying = format_note(note.text.replace("\n2\n", "\n3\n"), note.signatures)  # edited size, original signature
    assert _refusal(witness, AddCheckpointRequest(0, (), lying)).reason is WitnessFailure.BAD_LOG_SIGNATURE
    assert _refusal(witness, AddCheckpointRequest(0, (), "not a note")).reason is WitnessFailure.MALFORMED


def test_witness_state_is_its_own_and_survives_restarts(tmp_path: Path, release_key: ed25519.Ed25519PrivateKey) -> None:
    signer = log_signer()
    log = new_log(tmp_path)
    fill(log, release_key, range(2))
    log.sign_checkpoint(signer)
    path = tmp_path / "witness.sqlite3"
    state = SqliteWitnessState.create(path, "w.example/1")
    state.trust_log(signer.verifier)
    key = ed25519.Ed25519PrivateKey.generate()
    Witness(NoteSigner("w.example/1", SignatureType.COSIGNATURE_V1, key), state).add_checkpoint(_request(log, 0))
    state.close()
    reopened = SqliteWitnessState(path)
    assert reopened.latest(signer.name) == Checkpoint.from_text(parse_note(log.latest_checkpoint()).text)
    with pytest.raises(ValueError):
        reopened.trust_log(log_signer().verifier)  # the origin's key cannot be swapped
    with pytest.raises(ValueError):
        Witness(witness_signer("another-name"), reopened)
    reopened.close()


def test_log_collects_cosignatures_over_http(tmp_path: Path, release_key: ed25519.Ed25519PrivateKey) -> None:
    log, signer = new_log(tmp_path), log_signer()
    witness = new_witness(tmp_path, signer)
    fill(log, release_key, range(3))
    log.sign_checkpoint(signer)
    with serving(witness) as url:
        note = cosign_with_witness(log, url, witness.verifier)
        assert note == log.latest_checkpoint()
        assert [sig.name for sig in parse_note(note).signatures] == [signer.name, witness.verifier.name]
        fill(log, release_key, range(3, 4))
        log.sign_checkpoint(signer)
        grown = cosign_with_witness(log, url, witness.verifier)  # guesses 0, learns 3 from the 409, retries
        assert len(parse_note(grown).signatures) == 2
        again = cosign_with_witness(log, url, witness.verifier, old_size=4)  # a newer cosignature replaces it
        assert len(parse_note(again).signatures) == 2

        forked = new_log(tmp_path, "fork.sqlite3")
        fill(forked, release_key, [0, 1, 2, 77])
        forked.sign_checkpoint(signer)
        with pytest.raises(WitnessError) as refused:
            cosign_with_witness(forked, url, witness.verifier, old_size=4)
        assert refused.value.status_code == 409
        assert httpx.get(url + "/add-checkpoint").status_code == 405
        assert httpx.post(url + "/elsewhere", content=b"x").status_code == 404
    with pytest.raises(WitnessError) as unreachable:
        cosign_with_witness(log, url, witness.verifier)
    assert unreachable.value.status_code == 0
