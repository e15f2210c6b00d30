"""Ed25519 key files: private keys as PKCS8 PEM with mode 0600, public keys as SPKI PEM next to them.

Both the platform root and the release key live in such files. Loading refuses a private key that group or
others can read, as ssh does: a world-readable signing key is already a compromised one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.keys import key_id_for

PRIVATE_MODE = 0o600
DIR_MODE = 0o700
PUBLIC_MODE = 0o644


class KeyFileError(ValueError):
    """A key file is missing, unprotected, of the wrong type, or would be overwritten."""


def public_path_for(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def fingerprint(public_key: ed25519.Ed25519PublicKey) -> str:
    """The key id (SHA-256 of the SPKI DER, as for worker keys) that operators compare and verifiers pin."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key_id_for(der)


def create_key_file(path: Path, *, force: bool = False) -> ed25519.Ed25519PublicKey:
    """Make a key pair, write the private half (0600) and ``<path>.pub``; return the public half."""
    path = path.expanduser()
    if not force and (path.exists() or path.is_symlink()):
        raise KeyFileError("key file exists; pass force to replace it")
    _make_private_dirs(path.parent)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_atomic(path, pem, PRIVATE_MODE, replace=force)
    _write_atomic(public_path_for(path), public_pem, PUBLIC_MODE, replace=True)
    return public


def load_private_key(path: Path) -> ed25519.Ed25519PrivateKey:
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError:
        raise KeyFileError("cannot read private key file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError("private key file is accessible by group or others; chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError("not a PEM private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError("not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.expanduser().read_bytes())
    except OSError:
        raise KeyFileError("cannot read public key file") from None
    except (ValueError, TypeError):
        raise KeyFileError("not a PEM public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyFileError("not an Ed25519 public key")
    return key


def _make_private_dirs(directory: Path) -> None:
    # Only directories we create get 0700; an existing ~/.config keeps the mode its owner chose.
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new_dir in reversed(missing):
        new_dir.mkdir(mode=DIR_MODE)
        os.chmod(new_dir, DIR_MODE)  # mkdir's mode is filtered by the umask


def _write_atomic(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    # mkstemp creates the file 0600 before any byte is written, so the key is never briefly world-readable.
    # A forced replacement renames over the old file (all-or-nothing); otherwise link() refuses an existing
    # file, which closes the race between the exists() check above and this write.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, mode)
        if replace:
            os.replace(tmp_name, path)
        else:
            os.link(tmp_name, path)
    except FileExistsError:
        raise KeyFileError("key file exists; pass force to replace it") from None
    finally:
        Path(tmp_name).unlink(missing_ok=True)
