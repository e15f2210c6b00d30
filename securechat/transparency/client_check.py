"""What a client checks before it seals anything: the release it is about to trust is in the public log.

``ReleaseVerifier.verify`` accepts a signed manifest only with evidence that it is a leaf of a checkpoint that
the pinned log key signed, that at least ``min_witnesses`` of the pinned witnesses cosigned, and that extends
(or equals) the newest checkpoint this client accepted before. Checks run in the order of
``TransparencyFailure`` and each refuses with its own reason; the local memory of checkpoints moves forward
only after every check passed. A log that has not grown since the last visit is fine; one that shrank or whose
history differs is refused.

Comparing the manifest's registers with a worker's attestation stays ``AttestationVerifier``'s job; pass it
the manifest this verifier accepted.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from enum import StrEnum

from securechat.attestation import SignedManifest
from securechat.logs import get_logger, log_event
from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.evidence import ReleaseEvidence
from securechat.transparency.last_seen import LastSeenStore
from securechat.transparency.leaf import manifest_leaf_hash
from securechat.transparency.merkle import InvalidProof, verify_consistency, verify_inclusion
from securechat.transparency.note import InvalidNote, Note, parse_note
from securechat.transparency.note_keys import NoteVerifier, SignatureType, verified_keys

logger = get_logger("transparency")


class TransparencyFailure(StrEnum):
    """One value per check, in the order ``ReleaseVerifier.verify`` runs them."""

    MALFORMED = "malformed"  # the evidence, note or checkpoint does not parse
    BAD_LOG_SIGNATURE = "bad_log_signature"  # no valid signature by the pinned log key (or another origin)
    BAD_WITNESS_SIGNATURE = "bad_witness_signature"  # a pinned witness's cosignature line does not verify
    MISSING_WITNESS_COSIGNATURES = "missing_witness_cosignatures"  # fewer pinned witnesses than required
    ROLLBACK = "rollback"  # a smaller tree than this client already accepted
    CONSISTENCY_PROOF_MISSING = "consistency_proof_missing"  # proof not from the size last seen: refetch, retry
    INCONSISTENT_WITH_LAST_SEEN = "inconsistent_with_last_seen"  # split view or rewritten history
    NOT_IN_LOG = "not_in_log"  # the manifest is not a leaf of the checkpointed tree
    BAD_INCLUSION_PROOF = "bad_inclusion_proof"  # the proof does not lead to the checkpoint's root


class TransparencyError(Exception):
    """The release was refused; ``reason`` says which check failed. Content-free by construction."""

    def __init__(self, reason: TransparencyFailure) -> None:
        self.reason = reason
        super().__init__(f"transparency check refused: {reason.value}")


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    log_key: NoteVerifier  # the log's checkpoint key; its name is the log's origin
    witness_keys: tuple[NoteVerifier, ...] = ()
    min_witnesses: int = 0  # how many distinct pinned witnesses must have cosigned

    def __post_init__(self) -> None:
        if self.log_key.signature_type is not SignatureType.ED25519:
            raise ValueError("the log key must be a plain Ed25519 note key (type 0x01)")
        if any(key.signature_type is not SignatureType.COSIGNATURE_V1 for key in self.witness_keys):
            raise ValueError("witness keys must be cosignature keys (type 0x04)")
        if len({key.public_key for key in self.witness_keys}) != len(self.witness_keys):
            raise ValueError("each witness key may be pinned once")  # or one witness could count twice
        if not 0 <= self.min_witnesses <= len(self.witness_keys):
            raise ValueError("min_witnesses must be between 0 and the number of pinned witnesses")

    @property
    def origin(self) -> str:
        return self.log_key.name


@dataclass(frozen=True, slots=True)
class VerifiedRelease:
    manifest: SignedManifest
    leaf_index: int
    checkpoint: Checkpoint
    witnesses: tuple[str, ...]  # names of the pinned witnesses whose cosignatures verified


class ReleaseVerifier:
    def __init__(self, policy: TrustPolicy, last_seen: LastSeenStore) -> None:
        self.policy = policy
        self._last_seen = last_seen

    def last_seen_size(self) -> int:
        """The ``old_size`` to ask the log for: the consistency proof must start where this client stands."""
        with self._last_seen.locked():
            seen = self._last_seen.get(self.policy.origin)
        return 0 if seen is None else seen.size

    def verify(self, manifest: SignedManifest, evidence: ReleaseEvidence) -> VerifiedRelease:
        try:
            release = self._verify(manifest, evidence)
        except TransparencyError as error:
            log_event(logger, "release_refused", level=logging.WARNING, reason=error.reason.value)
            raise
        log_event(logger, "release_in_log", num_keys=len(release.witnesses))
        return release

    def _verify(self, manifest: SignedManifest, evidence: ReleaseEvidence) -> VerifiedRelease:
        note, checkpoint = _parse(evidence.checkpoint)
        self._check_log_signature(note, checkpoint)
        witnesses = self._check_witnesses(note)
        with self._last_seen.locked():
            seen = self._last_seen.get(checkpoint.origin)
            if seen is not None:
                _check_extends(seen, checkpoint, evidence)
            index = evidence.leaf_index
            if index is None:
                raise TransparencyError(TransparencyFailure.NOT_IN_LOG)
            try:
                verify_inclusion(
                    manifest_leaf_hash(manifest), index, checkpoint.size, evidence.inclusion_proof, checkpoint.root_hash
                )
            except InvalidProof:
                raise TransparencyError(TransparencyFailure.BAD_INCLUSION_PROOF) from None
            if seen is None or checkpoint.size > seen.size:
                self._last_seen.put(checkpoint, evidence.checkpoint)
        return VerifiedRelease(manifest, index, checkpoint, witnesses)

    def _check_log_signature(self, note: Note, checkpoint: Checkpoint) -> None:
        # The origin must be the pinned log's: a checkpoint of another log, however well signed, proves nothing.
        if checkpoint.origin != self.policy.origin:
            raise TransparencyError(TransparencyFailure.BAD_LOG_SIGNATURE)
        try:
            signed = verified_keys(note, [self.policy.log_key])
        except InvalidNote:
            signed = ()
        if not signed:
            raise TransparencyError(TransparencyFailure.BAD_LOG_SIGNATURE)

    def _check_witnesses(self, note: Note) -> tuple[str, ...]:
        try:
            cosigned = verified_keys(note, self.policy.witness_keys)
        except InvalidNote:
            raise TransparencyError(TransparencyFailure.BAD_WITNESS_SIGNATURE) from None
        if len(cosigned) < self.policy.min_witnesses:
            raise TransparencyError(TransparencyFailure.MISSING_WITNESS_COSIGNATURES)
        return tuple(key.name for key in cosigned)


def _parse(text: str) -> tuple[Note, Checkpoint]:
    try:
        note = parse_note(text)
        return note, Checkpoint.from_text(note.text)
    except InvalidNote:
        raise TransparencyError(TransparencyFailure.MALFORMED) from None


def _check_extends(seen: Checkpoint, checkpoint: Checkpoint, evidence: ReleaseEvidence) -> None:
    if checkpoint.size < seen.size:
        raise TransparencyError(TransparencyFailure.ROLLBACK)
    if checkpoint.size == seen.size:
        if not hmac.compare_digest(checkpoint.root_hash, seen.root_hash):
            raise TransparencyError(TransparencyFailure.INCONSISTENT_WITH_LAST_SEEN)
        return  # the log has not grown: nothing to prove
    if evidence.old_size != seen.size:
        raise TransparencyError(TransparencyFailure.CONSISTENCY_PROOF_MISSING)
    try:
        verify_consistency(seen.size, checkpoint.size, seen.root_hash, checkpoint.root_hash, evidence.consistency_proof)
    except InvalidProof:
        raise TransparencyError(TransparencyFailure.INCONSISTENT_WITH_LAST_SEEN) from None
