"""Release transparency: an append-only Merkle log of signed release manifests, its witnesses and the client check."""

from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.merkle import InvalidProof
from securechat.transparency.note import InvalidNote
from securechat.transparency.note_keys import NoteSigner, NoteVerifier, SignatureType

__all__ = ["Checkpoint", "InvalidNote", "InvalidProof", "NoteSigner", "NoteVerifier", "SignatureType"]
