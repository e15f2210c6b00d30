"""The log operator: what it accepts, what it signs, the proofs it serves, and what it refuses to sign."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import save_manifest
from securechat.transparency import (
    Checkpoint,
    DuplicateEntry,
    InvalidManifest,
    LogCorrupted,
    NoCheckpoint,
    NotInLog,
    manifest_from_leaf,
    manifest_leaf_data,
    manifest_leaf_hash,
    open_log,
)
from securechat.transparency.merkle import root_hash, verify_consistency, verify_inclusion
from securechat.transparency.note import parse_note
from securechat.transparency.note_keys import verified_keys
from tests.transparency_harness import ORIGIN, fill, log_signer, manifest, new_log


@pytest.fixture
def release_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def test_leaf_data_is_the_saved_manifest_file(tmp_path: Path, release_key: ed25519.Ed25519PrivateKey) -> None:
    signed = manifest(release_key, 1)
    save_manifest(tmp_path / "m.json", signed)
    assert manifest_leaf_data(signed) + b"\n" == (tmp_path / "m.json").read_bytes()
    assert manifest_from_leaf(manifest_leaf_data(signed)) == signed
    with pytest.raises(ValueError):
        manifest_from_leaf(b'{"manifest": 1}')
    with pytest.raises(ValueError):
        manifest_from_leaf(manifest_leaf_data(signed).replace(b",", b", ", 1))  # not canonical


def test_append_checks_the_release_signature_and_refuses_duplicates(
    tmp_path: Path, release_key: ed25519.Ed25519PrivateKey
) -> None:
    log = new_log(tmp_path)
    signed = manifest(release_key, 1)
    other_key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(InvalidManifest):
        log.append(signed, [other_key.public_key()])
    with pytest.raises(InvalidManifest):
        log.append(manifest(other_key, 2), [release_key.public_key()])
    assert log.size() == 0
    assert log.append(signed, [other_key.public_key(), release_key.public_key()]) == 0
    with pytest.raises(DuplicateEntry):
        log.append(signed, [release_key.public_key()])
    assert log.size() == 1
    log.close()


def test_checkpoints_are_signed_notes_over_the_current_tree(
    tmp_path: Path, release_key: ed25519.Ed25519PrivateKey
) -> None:
    log, signer = new_log(tmp_path), log_signer()
    with pytest.raises(NoCheckpoint):
        log.latest_checkpoint()
    fill(log, release_key, range(3))
    note_text = log.sign_checkpoint(signer)
    note = parse_note(note_text)
    assert verified_keys(note, [signer.verifier]) == (signer.verifier,)
    checkpoint = Checkpoint.from_text(note.text)
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 3)
    assert checkpoint.root_hash == root_hash(log.store.leaf_hashes(3))
    assert log.sign_checkpoint(signer) == note_text == log.latest_checkpoint()  # nothing new: same checkpoint
    fill(log, release_key, range(3, 5))
    assert Checkpoint.from_text(parse_note(log.sign_checkpoint(signer)).text).size == 5
    assert log.checkpoint_at(3) == note_text
    with pytest.raises(ValueError):
        log.sign_checkpoint(log_signer("another.example/log"))
    log.close()


def test_proofs_and_entries(tmp_path: Path, release_key: ed25519.Ed25519PrivateKey) -> None:
    log, signer = new_log(tmp_path), log_signer()
    manifests = fill(log, release_key, range(5))
    log.sign_checkpoint(signer)
    fill(log, release_key, range(5, 7))  # appended after the checkpoint
    old_root = root_hash(log.store.leaf_hashes(2))
    checkpoint = Checkpoint.from_text(parse_note(log.latest_checkpoint()).text)
    for signed in manifests:
        index, proof = log.inclusion_proof(manifest_leaf_hash(signed), checkpoint.size)
        verify_inclusion(manifest_leaf_hash(signed), index, checkpoint.size, proof, checkpoint.root_hash)
    verify_consistency(2, 5, old_root, checkpoint.root_hash, log.consistency_proof(2, 5))
    with pytest.raises(NotInLog):
        log.inclusion_proof(manifest_leaf_hash(manifest(release_key, 6)), checkpoint.size)
    with pytest.raises(NotInLog):
        log.inclusion_proof(manifest_leaf_hash(manifest(release_key, 99)), 7)
    assert [manifest_from_leaf(data) for data in log.entries(0, 5)] == manifests
    assert len(log.entries(5, 100)) == 2
    with pytest.raises(ValueError):
        log.entries(0, 5000)
    with pytest.raises(ValueError):
        log.consistency_proof(6, 5)
    log.close()


def test_evidence_bundles_checkpoint_inclusion_and_consistency(
    tmp_path: Path, release_key: ed25519.Ed25519PrivateKey
) -> None:
    log, signer = new_log(tmp_path), log_signer()
    manifests = fill(log, release_key, range(4))
    log.sign_checkpoint(signer)
    evidence = log.evidence(manifest_leaf_hash(manifests[2]), old_size=3)
    checkpoint = Checkpoint.from_text(parse_note(evidence.checkpoint).text)
    assert evidence.leaf_index == 2 and evidence.old_size == 3
    verify_inclusion(
        manifest_leaf_hash(manifests[2]), 2, checkpoint.size, evidence.inclusion_proof, checkpoint.root_hash
    )
    verify_consistency(3, 4, root_hash(log.store.leaf_hashes(3)), checkpoint.root_hash, evidence.consistency_proof)
    absent = log.evidence(manifest_leaf_hash(manifest(release_key, 9)))
    assert (absent.leaf_index, absent.inclusion_proof, absent.consistency_proof) == (None, (), ())
    ahead = log.evidence(manifest_leaf_hash(manifests[0]), old_size=10)  # a client ahead of this log
    assert ahead.consistency_proof == () and ahead.old_size == 10
    assert type(evidence).from_dict(evidence.to_dict()) == evidence
    log.close()


def test_a_rewritten_leaf_stops_the_log_from_signing_or_serving(
    tmp_path: Path, release_key: ed25519.Ed25519PrivateKey
) -> None:
    log, signer = new_log(tmp_path), log_signer()
    fill(log, release_key, range(3))
    log.sign_checkpoint(signer)
    log.close()
    raw = sqlite3.connect(tmp_path / "log.sqlite3")
    raw.execute("DROP TRIGGER leaves_no_update")  # someone with the database file and intent
    raw.execute("UPDATE leaves SET leaf_hash = ?, data = ? WHERE leaf_index = 1", (b"\x07" * 32, b"evil"))
    raw.commit()
    raw.close()
    log = open_log(tmp_path / "log.sqlite3")
    with pytest.raises(LogCorrupted):
        log.sign_checkpoint(signer)
    with pytest.raises(LogCorrupted):
        log.evidence(manifest_leaf_hash(manifest(release_key, 0)))
    with pytest.raises(LogCorrupted):
        log.entries(0, 3)  # the data no longer matches its hash either
    log.close()


def test_open_log_refuses_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_log(tmp_path / "absent.sqlite3")
