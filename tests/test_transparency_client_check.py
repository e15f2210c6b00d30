"""The client's check before sealing: in the log, signed, cosigned, and consistent with what it saw before."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import SignedManifest
from securechat.transparency import (
    FileLastSeen,
    LastSeenCorrupt,
    MemoryLastSeen,
    NoteSigner,
    ReleaseEvidence,
    ReleaseLog,
    ReleaseVerifier,
    TransparencyError,
    TransparencyFailure,
    TrustPolicy,
    Witness,
    WitnessFailure,
    WitnessRefusal,
    manifest_leaf_hash,
)
from securechat.transparency.note import format_note, parse_note, parse_signature_lines
from tests.transparency_harness import fill, log_signer, manifest, new_log, new_witness, witness_signer

Failure = TransparencyFailure


class World:
    """One log with two independent witnesses; helpers to publish a checkpoint and build client evidence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.release_key = ed25519.Ed25519PrivateKey.generate()
        self.signer = log_signer()
        self.log = new_log(directory)
        self.witnesses = [new_witness(directory, self.signer, f"witness.example/w{i}") for i in (1, 2)]
        self.manifests: list[SignedManifest] = []

    def grow(self, count: int, log: ReleaseLog | None = None, *, first: int | None = None) -> None:
        target = log or self.log
        start = target.size() if first is None else first
        added = fill(target, self.release_key, range(start, start + count))
        if target is self.log:
            self.manifests += added

    def publish(self, log: ReleaseLog | None = None, witnesses: list[Witness] | None = None) -> str:
        """Sign the tree head and have ``witnesses`` (default: both) cosign it, as an operator would."""
        target = log or self.log
        note = target.sign_checkpoint(self.signer)
        size = target.size()
        for witness in self.witnesses if witnesses is None else witnesses:
            try:
                line = witness.cosign(note, 0, [])
            except WitnessRefusal as refusal:  # not its first checkpoint: prove from where it stands
                if refusal.latest_size is None:
                    raise
                old = refusal.latest_size
                line = witness.cosign(note, old, target.consistency_proof(old, size))
            note = target.add_cosignatures(size, parse_signature_lines(line), [witness.verifier])
        return target.latest_checkpoint()

    def policy(self, min_witnesses: int = 2) -> TrustPolicy:
        return TrustPolicy(self.signer.verifier, tuple(w.verifier for w in self.witnesses), min_witnesses)

    def client(self, min_witnesses: int = 2) -> ReleaseVerifier:
        return ReleaseVerifier(self.policy(min_witnesses), MemoryLastSeen())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _refused(client: ReleaseVerifier, signed: SignedManifest, evidence: ReleaseEvidence) -> Failure:
    with pytest.raises(TransparencyError) as refused:
        client.verify(signed, evidence)
    return refused.value.reason


def _evidence(
    world: World, signed: SignedManifest, client: ReleaseVerifier, log: ReleaseLog | None = None
) -> ReleaseEvidence:
    return (log or world.log).evidence(manifest_leaf_hash(signed), client.last_seen_size())


def test_a_logged_cosigned_release_is_accepted_and_remembered(world: World) -> None:
    world.grow(3)
    world.publish()
    client = world.client()
    release = client.verify(world.manifests[1], _evidence(world, world.manifests[1], client))
    assert (release.leaf_index, release.checkpoint.size) == (1, 3)
    assert set(release.witnesses) == {"witness.example/w1", "witness.example/w2"}
    assert client.last_seen_size() == 3


def test_a_manifest_not_in_the_log_is_refused(world: World) -> None:
    world.grow(3)
    world.publish()
    client = world.client()
    stranger = manifest(world.release_key, 42)
    assert _refused(client, stranger, _evidence(world, stranger, client)) is Failure.NOT_IN_LOG
    world.grow(1)  # appended but not yet in a signed checkpoint: still not in the log a client can check
    assert _refused(client, world.manifests[3], _evidence(world, world.manifests[3], client)) is Failure.NOT_IN_LOG
    assert client.last_seen_size() == 0  # nothing is remembered from a refused check


def test_tampered_or_borrowed_inclusion_proofs_are_refused(world: World) -> None:
    world.grow(5)
    world.publish()
    client = world.client()
    evidence = _evidence(world, world.manifests[2], client)
    flipped = (
        bytes([evidence.inclusion_proof[0][0] ^ 1]) + evidence.inclusion_proof[0][1:],
        *evidence.inclusion_proof[1:],
    )
    for tampered in (
        replace(evidence, inclusion_proof=flipped),
        replace(evidence, inclusion_proof=evidence.inclusion_proof[:-1]),
        replace(evidence, leaf_index=3),
    ):
        assert _refused(client, world.manifests[2], tampered) is Failure.BAD_INCLUSION_PROOF
    # A genuine proof for another release does not vouch for this one.
    assert _refused(client, world.manifests[4], evidence) is Failure.BAD_INCLUSION_PROOF
    stranger = manifest(world.release_key, 42)
    assert _refused(client, stranger, evidence) is Failure.BAD_INCLUSION_PROOF


def test_log_signature_must_be_the_pinned_keys_over_this_checkpoint(world: World) -> None:
    world.grow(2)
    world.publish()
    client = world.client(min_witnesses=0)
    evidence = _evidence(world, world.manifests[0], client)
    note = parse_note(evidence.checkpoint)
    edited = format_note(note.text.replace("\n2\n", "\n3\n"), note.signatures)
    impostor = NoteSigner(world.signer.name, world.signer.verifier.signature_type, ed25519.Ed25519PrivateKey.generate())
    resigned = format_note(note.text, [impostor.sign(note.text)])
    other_origin = log_signer("other.example/log")
    other_text = note.text.replace(world.signer.name, "other.example/log")
    elsewhere = format_note(other_text, [other_origin.sign(other_text)])
    same_key_elsewhere = format_note(other_text, [world.signer.sign(other_text)])  # one key, two logs' heads
    for checkpoint in (edited, resigned, elsewhere, same_key_elsewhere):
        assert (
            _refused(client, world.manifests[0], replace(evidence, checkpoint=checkpoint)) is Failure.BAD_LOG_SIGNATURE
        )
    assert _refused(client, world.manifests[0], replace(evidence, checkpoint="garbage")) is Failure.MALFORMED


def test_missing_unknown_or_wrong_witness_signatures(world: World) -> None:
    world.grow(2)
    world.publish(witnesses=world.witnesses[:1])
    evidence = world.log.evidence(manifest_leaf_hash(world.manifests[0]), 0)
    assert _refused(world.client(2), world.manifests[0], evidence) is Failure.MISSING_WITNESS_COSIGNATURES
    assert world.client(1).verify(world.manifests[0], evidence).witnesses == ("witness.example/w1",)

    note = parse_note(evidence.checkpoint)
    log_only = format_note(note.text, note.signatures[:1])
    assert _refused(world.client(1), world.manifests[0], replace(evidence, checkpoint=log_only)) is (
        Failure.MISSING_WITNESS_COSIGNATURES
    )
    stranger = witness_signer("witness.example/stranger")  # a cosignature from a witness nobody pinned
    unpinned = format_note(note.text, [note.signatures[0], stranger.sign(note.text)])
    assert _refused(world.client(1), world.manifests[0], replace(evidence, checkpoint=unpinned)) is (
        Failure.MISSING_WITNESS_COSIGNATURES
    )
    # A line under a pinned witness's name and key id whose signature is not that witness's: tampering.
    pinned = world.witnesses[1].verifier
    forged_sig = stranger.sign(note.text)
    forged_line = replace(forged_sig, name=pinned.name, key_id=pinned.key_id)
    forged = format_note(note.text, [*note.signatures, forged_line])
    assert _refused(world.client(1), world.manifests[0], replace(evidence, checkpoint=forged)) is (
        Failure.BAD_WITNESS_SIGNATURE
    )
    # A genuine cosignature of another checkpoint does not carry over.
    world.grow(1)
    later = parse_note(world.publish())
    moved = format_note(note.text, [note.signatures[0], later.signatures[1]])
    assert _refused(world.client(1), world.manifests[0], replace(evidence, checkpoint=moved)) is (
        Failure.BAD_WITNESS_SIGNATURE
    )


def test_a_log_that_stops_growing_is_fine_and_one_that_grows_honestly_too(world: World) -> None:
    world.grow(2)
    world.publish()
    client = world.client()
    for _ in range(2):
        client.verify(world.manifests[0], _evidence(world, world.manifests[0], client))
    assert client.last_seen_size() == 2
    world.grow(3)
    world.publish()
    client.verify(world.manifests[4], _evidence(world, world.manifests[4], client))
    assert client.last_seen_size() == 5


def test_a_rolled_back_checkpoint_is_refused(world: World) -> None:
    world.grow(2)
    world.publish()
    stale = world.log.evidence(manifest_leaf_hash(world.manifests[0]), 0)  # genuine, cosigned, but old
    world.grow(2)
    world.publish()
    client = world.client()
    client.verify(world.manifests[3], _evidence(world, world.manifests[3], client))
    assert _refused(client, world.manifests[0], stale) is Failure.ROLLBACK
    assert client.last_seen_size() == 4


def test_split_view_is_caught_by_consistency_and_by_the_witness(world: World) -> None:
    """The log shows client A one tree and client B another, both signed with its real key."""
    world.grow(3)
    world.publish()  # view A, cosigned by both witnesses
    view_b = new_log(world.directory, "view-b.sqlite3")
    world.grow(2, view_b, first=0)
    targeted = manifest(world.release_key, 666)  # the release made for one targeted client
    view_b.append(targeted, [world.release_key.public_key()])
    view_b.sign_checkpoint(world.signer)

    # The witnesses have cosigned view A, so they refuse B as a fork; B reaches clients without cosignatures.
    witness = world.witnesses[0]
    with pytest.raises(WitnessRefusal) as refused:
        witness.cosign(view_b.latest_checkpoint(), 3, [])
    assert refused.value.reason is WitnessFailure.FORK
    client_b = world.client(min_witnesses=1)
    evidence_b = view_b.evidence(manifest_leaf_hash(targeted), 0)
    assert _refused(client_b, targeted, evidence_b) is Failure.MISSING_WITNESS_COSIGNATURES

    # A client that trusts the log alone is caught by its own memory once it has seen view A.
    client_a = world.client(min_witnesses=0)
    client_a.verify(world.manifests[0], _evidence(world, world.manifests[0], client_a))
    assert _refused(client_a, targeted, view_b.evidence(manifest_leaf_hash(targeted), 3)) is (
        Failure.INCONSISTENT_WITH_LAST_SEEN
    )
    view_b.append(manifest(world.release_key, 667), [world.release_key.public_key()])
    view_b.sign_checkpoint(world.signer)  # B grows, with a proof from 3 that is valid for B's own history
    assert _refused(client_a, targeted, view_b.evidence(manifest_leaf_hash(targeted), 3)) is (
        Failure.INCONSISTENT_WITH_LAST_SEEN
    )


def test_rewritten_history_is_refused_and_a_proof_from_elsewhere_is_asked_again(world: World) -> None:
    world.grow(3)
    world.publish()
    client = world.client(min_witnesses=0)
    client.verify(world.manifests[0], _evidence(world, world.manifests[0], client))
    rewritten = new_log(world.directory, "rewritten.sqlite3")
    world.grow(1, rewritten, first=0)
    world.grow(4, rewritten, first=10)  # leaves 1 and 2 replaced, then the log "grows"
    rewritten.sign_checkpoint(world.signer)
    release = manifest(world.release_key, 10)
    assert _refused(client, release, rewritten.evidence(manifest_leaf_hash(release), 3)) is (
        Failure.INCONSISTENT_WITH_LAST_SEEN
    )
    with pytest.raises(WitnessRefusal) as refused:
        world.witnesses[0].cosign(rewritten.latest_checkpoint(), 3, rewritten.consistency_proof(3, 5))
    assert refused.value.reason is WitnessFailure.INCONSISTENT

    world.grow(2)
    world.publish()
    from_zero = world.log.evidence(manifest_leaf_hash(world.manifests[4]), 0)  # not from where the client stands
    assert _refused(client, world.manifests[4], from_zero) is Failure.CONSISTENCY_PROOF_MISSING
    client.verify(world.manifests[4], _evidence(world, world.manifests[4], client))


def test_file_state_is_private_shared_across_instances_and_fails_closed(world: World, tmp_path: Path) -> None:
    world.grow(3)
    world.publish()
    path = tmp_path / "state" / "last-seen.json"
    first = ReleaseVerifier(world.policy(), FileLastSeen(path))
    first.verify(world.manifests[0], world.log.evidence(manifest_leaf_hash(world.manifests[0]), 0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())["logs"][world.signer.name]
    assert stored["size"] == 3 and stored["checkpoint"] == world.log.latest_checkpoint()

    second = ReleaseVerifier(world.policy(), FileLastSeen(path))  # another process of the same user
    assert second.last_seen_size() == 3
    old = world.log.evidence(manifest_leaf_hash(world.manifests[0]), 0)
    world.grow(1)
    world.publish()
    second.verify(world.manifests[3], world.log.evidence(manifest_leaf_hash(world.manifests[3]), 3))
    assert _refused(first, world.manifests[0], old) is Failure.ROLLBACK  # first sees what second accepted

    path.write_text("{not json")
    with pytest.raises(LastSeenCorrupt):
        first.verify(world.manifests[0], old)


def test_evidence_parsing_is_strict(world: World) -> None:
    world.grow(2)
    world.publish()
    evidence = world.log.evidence(manifest_leaf_hash(world.manifests[0]), 0)
    wire = evidence.to_dict()
    assert ReleaseEvidence.from_dict(json.loads(json.dumps(wire))) == evidence
    for broken in (
        {**wire, "extra": 1},
        {key: value for key, value in wire.items() if key != "old_size"},
        {**wire, "leaf_index": -1},
        {**wire, "leaf_index": True},
        {**wire, "inclusion_proof": ["AAAA"]},
        {**wire, "inclusion_proof": "AAAA"},
        {**wire, "consistency_proof": [None]},
        {**wire, "checkpoint": 7},
    ):
        with pytest.raises(ValueError):
            ReleaseEvidence.from_dict(broken)


def test_trust_policy_is_validated(world: World) -> None:
    witness_keys = tuple(w.verifier for w in world.witnesses)
    with pytest.raises(ValueError):
        TrustPolicy(world.signer.verifier, witness_keys, 3)
    with pytest.raises(ValueError):
        TrustPolicy(world.signer.verifier, (witness_keys[0], witness_keys[0]), 2)  # one witness counted twice
    with pytest.raises(ValueError):
        TrustPolicy(witness_keys[0], (), 0)  # a cosignature key is not a log key
    with pytest.raises(ValueError):
        TrustPolicy(world.signer.verifier, (world.signer.verifier,), 1)
