"""Release transparency: an append-only Merkle log of signed release manifests, its witnesses and the client check."""

from securechat.transparency.merkle import InvalidProof

__all__ = ["InvalidProof"]
