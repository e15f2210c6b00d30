"""Log and witness signing keys on disk: Ed25519 PEM files (0600) as for the platform root and release key,
plus a ``.vkey`` file beside each holding the one line that others pin (``<name>+<key id>+<base64 key>``).

The note name is not in the PEM: the log's is its origin (kept in the log database) and the witness's is in
its state, so a key file cannot silently speak under another name.
"""

from __future__ import annotations

from pathlib import Path

from securechat.attestation._keyfile import create_key_file, load_private_key
from securechat.transparency.note import InvalidNote, is_valid_key_name
from securechat.transparency.note_keys import NoteSigner, NoteVerifier, SignatureType


def vkey_path_for(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".vkey")


def create_note_key(path: Path, name: str, signature_type: SignatureType, *, force: bool = False) -> NoteVerifier:
    """Write a new key (refusing to overwrite unless ``force``) and its ``.vkey``; return the verifier."""
    if not is_valid_key_name(name):
        raise ValueError("key names are non-empty and hold no spaces or '+'")
    path = path.expanduser()
    public = create_key_file(path, force=force)
    verifier = NoteVerifier.for_key(name, signature_type, public)
    vkey_path_for(path).write_text(verifier.to_vkey() + "\n")
    return verifier


def load_note_signer(path: Path, name: str, signature_type: SignatureType) -> NoteSigner:
    return NoteSigner(name, signature_type, load_private_key(path.expanduser()))


def read_vkey(text: str) -> NoteVerifier:
    """A pinned key given as its vkey line (surrounding whitespace allowed, as in a file)."""
    try:
        return NoteVerifier.from_vkey(text.strip())
    except InvalidNote:
        raise ValueError("not a verifier key (<name>+<8 hex>+<base64>)") from None
