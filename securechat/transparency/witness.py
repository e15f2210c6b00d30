"""A witness: cosigns a log's checkpoint only if it extends the last checkpoint it cosigned for that log.

The request and its answers follow c2sp.org/tlog-witness (``add-checkpoint``): the body is ``old <size>``, the
consistency proof from that size as base64 lines, a blank line, then the signed checkpoint; each refusal maps to
the status code the spec names. A log that shows two clients two different trees has to get both past the same
witnesses, and a witness only ever moves forward along one history, so the second tree is refused (as a fork,
or as inconsistent) and a client requiring that witness's cosignature refuses it too.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from securechat.logs import get_logger, log_event
from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.merkle import EMPTY_ROOT, HASH_BYTES, InvalidProof, verify_consistency
from securechat.transparency.note import InvalidNote, parse_note, strict_b64decode
from securechat.transparency.note_keys import NoteSigner, NoteVerifier, SignatureType, verified_keys
from securechat.transparency.witness_state import WitnessState

logger = get_logger("transparency")

MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_PROOF_LINES: Final = 63  # the spec's limit: enough for any tree of up to 2**63 leaves
_OLD_LINE: Final = re.compile(r"^old (0|[1-9][0-9]{0,18})$")


class WitnessFailure(StrEnum):
    """Why a witness refused, in the order it checks; ``STATUS_CODES`` gives the HTTP status for each."""

    MALFORMED = "malformed"  # request, note or checkpoint not well-formed
    UNKNOWN_LOG = "unknown_log"  # an origin this witness does not watch
    BAD_LOG_SIGNATURE = "bad_log_signature"  # no valid signature by the log's key
    ROLLBACK = "rollback"  # the checkpoint is smaller than the old size it claims to extend
    OLD_SIZE_MISMATCH = "old_size_mismatch"  # the log's idea of what this witness last cosigned is wrong
    FORK = "fork"  # same size as the last cosigned checkpoint, different root: a split view
    INCONSISTENT = "inconsistent"  # the consistency proof does not verify: history was rewritten


STATUS_CODES: Final = {
    WitnessFailure.MALFORMED: 400,
    WitnessFailure.UNKNOWN_LOG: 404,
    WitnessFailure.BAD_LOG_SIGNATURE: 403,
    WitnessFailure.ROLLBACK: 400,
    WitnessFailure.OLD_SIZE_MISMATCH: 409,
    WitnessFailure.FORK: 409,
    WitnessFailure.INCONSISTENT: 422,
}


class WitnessRefusal(Exception):
    """The witness did not cosign. ``latest_size`` (for 409s) is the size it last cosigned."""

    def __init__(self, reason: WitnessFailure, latest_size: int | None = None) -> None:
        self.reason = reason
        self.status_code = STATUS_CODES[reason]
        self.latest_size = latest_size
        super().__init__(f"witness refused: {reason.value}")


@dataclass(frozen=True, slots=True)
class AddCheckpointRequest:
    old_size: int
    proof: tuple[bytes, ...]  # consistency proof from old_size to the checkpoint's size
    checkpoint: str  # the signed note

    def to_body(self) -> bytes:
        lines = [f"old {self.old_size}", *(base64.b64encode(node).decode() for node in self.proof)]
        return ("\n".join(lines) + "\n\n" + self.checkpoint).encode()

    @classmethod
    def from_body(cls, body: bytes) -> AddCheckpointRequest:
        """Parse the wire form; ``WitnessRefusal(MALFORMED)`` on anything else."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WitnessRefusal(WitnessFailure.MALFORMED) from None
        header, blank, checkpoint = text.partition("\n\n")  # proof lines are never empty: first blank ends them
        lines = header.split("\n")
        match = _OLD_LINE.match(lines[0])
        if len(body) > MAX_REQUEST_BYTES or not blank or match is None or len(lines) - 1 > MAX_PROOF_LINES:
            raise WitnessRefusal(WitnessFailure.MALFORMED)
        try:
            proof = tuple(strict_b64decode(line) for line in lines[1:])
        except InvalidNote:
            raise WitnessRefusal(WitnessFailure.MALFORMED) from None
        if any(len(node) != HASH_BYTES for node in proof):
            raise WitnessRefusal(WitnessFailure.MALFORMED)
        return cls(int(match.group(1)), proof, checkpoint)


class Witness:
    """Holds the witness key and its state; ``add_checkpoint`` is the whole protocol."""

    def __init__(self, signer: NoteSigner, state: WitnessState, *, clock: Callable[[], float] = time.time) -> None:
        if signer.verifier.signature_type is not SignatureType.COSIGNATURE_V1 or signer.name != state.name:
            raise ValueError("the witness key must be a cosignature (type 0x04) key named as the witness state")
        self._signer = signer
        self._state = state
        self._clock = clock

    @property
    def verifier(self) -> NoteVerifier:
        """The key clients pin (``verifier.to_vkey()``)."""
        return self._signer.verifier

    def add_checkpoint(self, request: AddCheckpointRequest) -> str:
        """Cosign ``request.checkpoint`` and return the cosignature line, or raise ``WitnessRefusal``."""
        try:
            checkpoint, text = self._verified_checkpoint(request)
            if request.old_size > checkpoint.size:
                raise WitnessRefusal(WitnessFailure.ROLLBACK)
            self._state.advance(checkpoint, lambda latest: _check_extends(latest, checkpoint, request))
        except WitnessRefusal as refusal:
            log_event(logger, "witness_refused", reason=refusal.reason.value, status_code=refusal.status_code)
            raise
        log_event(logger, "witness_cosigned")
        return self._signer.sign(text, timestamp=int(self._clock())).to_line()

    def cosign(self, checkpoint: str, old_size: int, proof: Sequence[bytes]) -> str:
        return self.add_checkpoint(AddCheckpointRequest(old_size, tuple(proof), checkpoint))

    def _verified_checkpoint(self, request: AddCheckpointRequest) -> tuple[Checkpoint, str]:
        try:
            note = parse_note(request.checkpoint)
            checkpoint = Checkpoint.from_text(note.text)
        except InvalidNote:
            raise WitnessRefusal(WitnessFailure.MALFORMED) from None
        if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
            raise WitnessRefusal(WitnessFailure.MALFORMED)
        log_key = self._state.trusted_logs().get(checkpoint.origin)
        if log_key is None:
            raise WitnessRefusal(WitnessFailure.UNKNOWN_LOG)
        try:
            signed_by_log = verified_keys(note, [log_key])
        except InvalidNote:
            signed_by_log = ()
        if not signed_by_log:
            raise WitnessRefusal(WitnessFailure.BAD_LOG_SIGNATURE)
        return checkpoint, note.text


def _check_extends(latest: Checkpoint | None, new: Checkpoint, request: AddCheckpointRequest) -> None:
    """Runs under the state's lock, against the latest checkpoint this witness cosigned for the log."""
    latest_size = 0 if latest is None else latest.size
    if request.old_size != latest_size:
        raise WitnessRefusal(WitnessFailure.OLD_SIZE_MISMATCH, latest_size)
    if latest is None or latest.size == 0:
        if request.proof:  # the spec: nothing to prove from the empty tree, so the proof must be empty
            raise WitnessRefusal(WitnessFailure.MALFORMED)
        return  # the first checkpoint seen for a log is taken on trust, as every witness must
    if new.size == latest.size:
        if new.root_hash != latest.root_hash:
            raise WitnessRefusal(WitnessFailure.FORK, latest_size)
        if request.proof:
            raise WitnessRefusal(WitnessFailure.MALFORMED)
        return  # a log that has not grown is cosigned again: stopping is not misbehaving
    try:
        verify_consistency(latest.size, new.size, latest.root_hash, new.root_hash, request.proof)
    except InvalidProof:
        raise WitnessRefusal(WitnessFailure.INCONSISTENT) from None
