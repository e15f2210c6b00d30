"""The release manifest: which register values a release accepts, signed by the release key.

It plays the part of a transparency-logged release in Apple PCC or a pinned PCR set for Nitro: the verifier
accepts a worker only if every register it reports is one the release owner signed off. Each register maps to
a set of values so one manifest can cover a rolling upgrade (old and new code both allowed for a while).
The release key is a separate key from the platform root: who may ship code is not who vouches for hardware.

It also names the suites clients may seal to (``securechat.suites``): a client seals only to a verified
worker's key of one of them and refuses a worker that offers none (``no_allowed_suite``), so a host cannot
talk a client down to a classical key by offering only that. And it names the platforms whose evidence it
accepts, with their launch measurements and minimum TCB (``policy.py``): a manifest that lists only hardware
platforms refuses the simulated one, whatever the host offers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation._canonical import (
    b64decode,
    b64encode,
    canonical_json,
    exact_keys,
    read_hex,
    read_int,
    read_name,
    signed_bytes,
)
from securechat.attestation._keyfile import create_key_file, load_private_key, load_public_key
from securechat.attestation.certificate import ED25519_SIGNATURE_BYTES
from securechat.attestation.measurement import MAX_REGISTERS, REGISTER_HEX, measure_worker
from securechat.attestation.policy import SIMULATED_ONLY, PlatformPolicy
from securechat.envelope import is_valid_id
from securechat.suites import DEFAULT_SUITES, Suite

# 3: names the platforms it accepts and their policies; 2: the suites clients may seal to; 1: registers only.
MANIFEST_VERSION: Final = 3
MAX_VALUES_PER_REGISTER: Final = 64
MAX_MANIFEST_BYTES: Final = 1 << 20
RELEASE_KEY_ENV: Final = "SECURECHAT_RELEASE_KEY"
DEFAULT_RELEASE_KEY_PATH: Final = Path("~/.config/securechat/release-key.pem")

_DOMAIN: Final = b"securechat-release-manifest-v1"
_FIELDS: Final = frozenset({"version", "name", "release", "created_at", "registers", "suites", "platforms"})
_SIGNED_FIELDS: Final = frozenset({"manifest", "signature"})


@dataclass(frozen=True, slots=True)
class ReleaseManifest:
    name: str  # e.g. the deployment name
    release: str  # the release's version label
    registers: Mapping[str, AbstractSet[str]]  # register name -> accepted hex values (stored as frozensets)
    created_at: int  # unix seconds
    suites: tuple[Suite, ...] = DEFAULT_SUITES  # what clients may seal to, in the order the release prefers
    platforms: PlatformPolicy = SIMULATED_ONLY  # whose evidence is accepted, and what it must show

    def __post_init__(self) -> None:
        if not is_valid_id(self.name) or not is_valid_id(self.release) or not 0 < len(self.registers) <= MAX_REGISTERS:
            raise ValueError("invalid manifest")
        if not self.suites or len(set(self.suites)) != len(self.suites):
            raise ValueError("invalid manifest suites")
        frozen = {read_name(name): frozenset(values) for name, values in self.registers.items()}
        for values in frozen.values():
            if not 0 < len(values) <= MAX_VALUES_PER_REGISTER:
                raise ValueError("invalid manifest register values")
            for value in values:
                read_hex(value, min_chars=REGISTER_HEX, max_chars=REGISTER_HEX)
        object.__setattr__(self, "registers", MappingProxyType(frozen))

    def allows(self, register: str, value: str) -> bool:
        return value in self.registers.get(register, frozenset())

    def union(self, other: ReleaseManifest, *, release: str, now: float | None = None) -> ReleaseManifest:
        """Accept the values of both manifests, e.g. while replicas roll from ``other``'s release to this one."""
        names = set(self.registers) | set(other.registers)
        merged = {
            name: self.registers.get(name, frozenset()) | other.registers.get(name, frozenset()) for name in names
        }
        suites = (*self.suites, *(suite for suite in other.suites if suite not in self.suites))
        created_at = int(time.time() if now is None else now)
        return ReleaseManifest(self.name, release, merged, created_at, suites, self.platforms.union(other.platforms))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "name": self.name,
            "release": self.release,
            "created_at": self.created_at,
            "registers": {name: sorted(values) for name, values in self.registers.items()},
            "suites": [suite.value for suite in self.suites],
            "platforms": self.platforms.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: object) -> ReleaseManifest:
        if isinstance(data, Mapping) and data.get("version") != MANIFEST_VERSION:
            raise ValueError(
                f"unsupported manifest version (this release reads version {MANIFEST_VERSION}, which names the"
                " suites clients may seal to and the platforms it accepts): rebuild it with `securechat manifest build`"
            )
        fields = exact_keys(data, _FIELDS)
        read_int(fields["version"])
        return cls(
            fields["name"],
            fields["release"],
            _read_registers(fields["registers"]),
            read_int(fields["created_at"]),
            _read_suites(fields["suites"]),
            PlatformPolicy.from_dict(fields["platforms"]),
        )


@dataclass(frozen=True, slots=True)
class SignedManifest:
    manifest: ReleaseManifest
    signature: bytes

    def signed_bytes(self) -> bytes:
        return signed_bytes(_DOMAIN, self.manifest.to_dict())

    def verify(self, release_key: ed25519.Ed25519PublicKey) -> bool:
        try:
            release_key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest.to_dict(), "signature": b64encode(self.signature)}

    @classmethod
    def from_dict(cls, data: object) -> SignedManifest:
        fields = exact_keys(data, _SIGNED_FIELDS)
        signature = b64decode(fields["signature"], max_bytes=ED25519_SIGNATURE_BYTES)
        if len(signature) != ED25519_SIGNATURE_BYTES:
            raise ValueError("invalid manifest signature length")
        return cls(ReleaseManifest.from_dict(fields["manifest"]), signature)


def _read_registers(value: object) -> dict[str, frozenset[str]]:
    # Values are checked in __post_init__; here only the wire form: lists, sorted and unique, because that is
    # the canonical encoding and anything else would not re-encode to the signed bytes.
    if not isinstance(value, Mapping):
        raise ValueError("invalid manifest registers")
    registers: dict[str, frozenset[str]] = {}
    for name, values in value.items():
        if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
            raise ValueError("invalid manifest register values")
        if values != sorted(set(values)):
            raise ValueError("manifest register values must be sorted and unique")
        registers[name] = frozenset(values)
    return registers


def _read_suites(value: object) -> tuple[Suite, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("invalid manifest suites")
    try:
        return tuple(Suite(item) for item in value)
    except ValueError:
        raise ValueError("manifest names an unknown suite") from None


def build_manifest(
    name: str,
    release: str,
    *,
    package_dir: Path,
    config: Mapping[str, Any],
    model_dir: Path,
    now: float | None = None,
    suites: Sequence[Suite] = DEFAULT_SUITES,
    platforms: PlatformPolicy = SIMULATED_ONLY,
) -> ReleaseManifest:
    """A manifest that accepts exactly the current code, runtime config and model files."""
    registers = measure_worker(package_dir, config, model_dir)
    return manifest_for_registers(name, release, registers, now=now, suites=suites, platforms=platforms)


def manifest_for_registers(
    name: str,
    release: str,
    registers: Mapping[str, str],
    *,
    now: float | None = None,
    suites: Sequence[Suite] = DEFAULT_SUITES,
    platforms: PlatformPolicy = SIMULATED_ONLY,
) -> ReleaseManifest:
    """A manifest that accepts exactly these measured register values, sealed to with ``suites``, on
    ``platforms``."""
    allowed = {register: frozenset({value}) for register, value in registers.items()}
    created_at = int(time.time() if now is None else now)
    return ReleaseManifest(name, release, allowed, created_at, tuple(suites), platforms)


def sign_manifest(manifest: ReleaseManifest, release_key: ed25519.Ed25519PrivateKey) -> SignedManifest:
    unsigned = SignedManifest(manifest, b"")
    return SignedManifest(manifest, release_key.sign(unsigned.signed_bytes()))


def save_manifest(path: Path, signed: SignedManifest) -> None:
    path.write_bytes(canonical_json(signed.to_dict()) + b"\n")


def load_manifest(path: Path) -> SignedManifest:
    """Parse only; ``AttestationVerifier`` checks the signature before trusting any value in it."""
    data = path.read_bytes()
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError("manifest file too large")
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("manifest is not JSON") from None
    return SignedManifest.from_dict(parsed)


def default_release_key_path(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get(RELEASE_KEY_ENV)
    return Path(configured if configured else DEFAULT_RELEASE_KEY_PATH).expanduser()


def create_release_key(path: Path | None = None, *, force: bool = False) -> ed25519.Ed25519PublicKey:
    """Like ``create_root``: private key 0600, parent dirs 0700, ``.pub`` beside it; refuses to overwrite."""
    return create_key_file(path or default_release_key_path(), force=force)


def load_release_key(path: Path | None = None) -> ed25519.Ed25519PrivateKey:
    return load_private_key(path or default_release_key_path())


def load_release_public(path: Path) -> ed25519.Ed25519PublicKey:
    """The pinned release key, from a ``.pub`` file (SPKI PEM)."""
    return load_public_key(path)
