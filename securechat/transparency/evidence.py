"""What a client needs to trust a release before sealing, in one JSON object the log (or gateway) serves.

``{"checkpoint": <signed note text>, "leaf_index": int | null, "inclusion_proof": [b64 hash, ...],
"old_size": int, "consistency_proof": [b64 hash, ...]}``

The inclusion proof is for the checkpoint's tree size; the consistency proof runs from ``old_size`` (the size
the client says it last saw) to the checkpoint's size. ``leaf_index`` is null when the manifest is not in the
checkpointed tree. Nothing here is trusted: ``ReleaseVerifier`` checks every field.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from securechat.attestation._canonical import exact_keys, read_int
from securechat.transparency.merkle import HASH_BYTES, MAX_PROOF_HASHES
from securechat.transparency.note import MAX_NOTE_BYTES, InvalidNote, strict_b64decode

_FIELDS: Final = frozenset({"checkpoint", "leaf_index", "inclusion_proof", "old_size", "consistency_proof"})


@dataclass(frozen=True, slots=True)
class ReleaseEvidence:
    checkpoint: str  # the signed note, cosignatures included
    leaf_index: int | None
    inclusion_proof: tuple[bytes, ...]
    old_size: int
    consistency_proof: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "leaf_index": self.leaf_index,
            "inclusion_proof": encode_hashes(self.inclusion_proof),
            "old_size": self.old_size,
            "consistency_proof": encode_hashes(self.consistency_proof),
        }

    @classmethod
    def from_dict(cls, data: object) -> ReleaseEvidence:
        """Parse the wire form; ``ValueError`` (never a partial object) on anything unexpected."""
        fields: Mapping[str, Any] = exact_keys(data, _FIELDS)
        checkpoint = fields["checkpoint"]
        if not isinstance(checkpoint, str) or len(checkpoint) > MAX_NOTE_BYTES:
            raise ValueError("invalid checkpoint field")
        leaf_index = None if fields["leaf_index"] is None else read_int(fields["leaf_index"])
        return cls(
            checkpoint,
            leaf_index,
            decode_hashes(fields["inclusion_proof"]),
            read_int(fields["old_size"]),
            decode_hashes(fields["consistency_proof"]),
        )


def encode_hashes(hashes: tuple[bytes, ...] | list[bytes]) -> list[str]:
    return [base64.b64encode(value).decode() for value in hashes]


def decode_hashes(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise ValueError("invalid proof field")
    try:
        hashes = tuple(strict_b64decode(item) if isinstance(item, str) else b"" for item in value)
    except InvalidNote:
        raise ValueError("invalid proof field") from None
    if any(len(item) != HASH_BYTES for item in hashes):
        raise ValueError("invalid proof field")
    return hashes
