"""The server secret that keys API-key digests: a file outside the database, readable by its owner only.

Format: 64 hex digits (32 random bytes) and an optional newline, so an operator can provision it with
``openssl rand -hex 32 > FILE; chmod 600 FILE`` or mount it from a secret manager (Kubernetes: set
``defaultMode: 0400``). When the file does not exist it is created with mode 0600 on first use; creation is
atomic (write a temporary file, then hard-link it into place), so two processes starting together agree on one
secret. A file that group or others may read is refused rather than used: a leaked secret plus a leaked database
would let an attacker test guesses offline. Losing or replacing the file invalidates every API key; the store
records a fingerprint of the secret to detect that at open instead of failing every request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

SECRET_BYTES: Final = 32
_FINGERPRINT_DOMAIN: Final = b"securechat-server-secret-fingerprint-v1"


class ServerSecretError(RuntimeError):
    """The server secret file is unusable: wrong permissions, wrong format, or not the one the DB was made with."""


def load_or_create_server_secret(path: Path | str) -> bytes:
    """The 32-byte secret stored at ``path``, created (0600) if missing."""
    path = Path(path).expanduser()
    if not path.exists():
        _create(path)
    return _read(path)


def fingerprint(secret: bytes) -> str:
    """A non-reversible id of the secret (safe to store next to the digests) to detect a swapped file."""
    return hmac.new(secret, _FINGERPRINT_DOMAIN, hashlib.sha256).hexdigest()[:32]


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its secret
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ServerSecretError("server secret is not a regular file")
    if info.st_mode & 0o077:
        raise ServerSecretError("server secret file must not be readable by group or others (chmod 600)")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ServerSecretError("server secret file must hold 64 hex digits") from None
    if len(secret) != SECRET_BYTES:
        raise ServerSecretError("server secret file must hold 64 hex digits")
    return secret
