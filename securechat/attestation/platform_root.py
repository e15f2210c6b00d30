"""The simulated platform root: an Ed25519 key pair that stands in for the AWS Nitro / Intel root CA.

Chain shape (two links, as in Nitro's cabundle or TDX's PCK chain)::

    platform root (pinned by clients)
      └─ signs an AttestationKeyCertificate: "this Ed25519 attestation key speaks for worker W until T"
           └─ the attestation key signs each AttestationDocument of worker W

Why not have the root sign documents directly: a worker loads the root once at start-up, endorses a fresh
attestation key bound to its own worker id, and then drops the root. For the rest of the replica's life a
memory disclosure yields only a key that can speak for that one worker until its certificate expires, not one
that can mint documents for any worker forever. In this simulation the root file sits on the worker host, so
this narrows exposure in time and scope; it is not a defence against a host that reads the file directly.

Location: ``$SECURECHAT_PLATFORM_ROOT`` if set, else ``~/.config/securechat/platform-root.pem``; the public
half is written next to it as ``platform-root.pem.pub`` and is what clients pin.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation._keyfile import (
    KeyFileError,
    create_key_file,
    fingerprint,
    load_private_key,
    load_public_key,
)

ROOT_PATH_ENV: Final = "SECURECHAT_PLATFORM_ROOT"
DEFAULT_ROOT_PATH: Final = Path("~/.config/securechat/platform-root.pem")


def default_root_path(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get(ROOT_PATH_ENV)
    return Path(configured if configured else DEFAULT_ROOT_PATH).expanduser()


def create_root(path: Path | None = None, *, force: bool = False) -> ed25519.Ed25519PublicKey:
    """Write a new root (private key 0600, parent dirs 0700, ``.pub`` beside it); refuse to overwrite."""
    return create_key_file(path or default_root_path(), force=force)


def ensure_root(path: Path | None = None) -> ed25519.Ed25519PrivateKey:
    """Load the root, creating it first if it does not exist (the simulated platform's first start).

    Several workers may start at once: whoever loses the race to create it loads the winner's file.
    """
    target = path or default_root_path()
    if not target.expanduser().exists():
        with contextlib.suppress(KeyFileError):  # another process created it between our check and our write
            create_key_file(target)
    return load_private_key(target)


def load_root(path: Path | None = None) -> ed25519.Ed25519PrivateKey:
    return load_private_key(path or default_root_path())


def load_root_public(path: Path) -> ed25519.Ed25519PublicKey:
    """The pinned root, from a ``.pub`` file (SPKI PEM)."""
    return load_public_key(path)


def root_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """The root's key id: what a certificate names as its issuer and what operators compare when pinning."""
    return fingerprint(public_key)
