"""Helpers (no tests) for the transparency tests: release manifests, log and witness keys, logs in temp dirs."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import SignedManifest, manifest_for_registers, sign_manifest
from securechat.transparency import (
    NoteSigner,
    ReleaseLog,
    SignatureType,
    SqliteLogStore,
    SqliteWitnessState,
    Witness,
    make_witness_server,
)
from securechat.transparency.witness_http import WitnessServer

ORIGIN = "test.example/releases"
NOW = 1_700_000_000


def manifest(release_key: ed25519.Ed25519PrivateKey, number: int) -> SignedManifest:
    """A distinct signed manifest per ``number`` (its registers differ, so its leaf does too)."""
    registers = {"code": f"{number:064x}", "config": "2" * 64, "model": "3" * 64}
    return sign_manifest(manifest_for_registers("securechat", f"r{number}", registers, now=NOW), release_key)


def log_signer(origin: str = ORIGIN) -> NoteSigner:
    return NoteSigner(origin, SignatureType.ED25519, ed25519.Ed25519PrivateKey.generate())


def witness_signer(name: str) -> NoteSigner:
    return NoteSigner(name, SignatureType.COSIGNATURE_V1, ed25519.Ed25519PrivateKey.generate())


def new_log(directory: Path, name: str = "log.sqlite3", origin: str = ORIGIN) -> ReleaseLog:
    return ReleaseLog(SqliteLogStore.create(directory / name, origin))


def fill(log: ReleaseLog, release_key: ed25519.Ed25519PrivateKey, numbers: Iterable[int]) -> list[SignedManifest]:
    manifests = [manifest(release_key, number) for number in numbers]
    for signed in manifests:
        log.append(signed, [release_key.public_key()])
    return manifests


def new_witness(directory: Path, log_signer_: NoteSigner, name: str = "witness.example/w1") -> Witness:
    state = SqliteWitnessState.create(directory / f"{name.replace('/', '_')}.sqlite3", name)
    state.trust_log(log_signer_.verifier)
    return Witness(witness_signer(name), state)


@contextmanager
def serving(witness: Witness) -> Iterator[str]:
    """The witness over HTTP on a free loopback port, in a background thread; yields its URL."""
    server: WitnessServer = make_witness_server(witness, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
