"""What the client trusts: the pinned root, the release key and its manifest (and, when pinned, the release log
and its witnesses), and the keys verified with them.

``VerifiedKeys`` is the cache between attestations. It holds only keys from workers that passed every check
and is valid until the earliest expiry among them or a short TTL, whichever comes first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securechat.attestation import (
    AttestationVerifier,
    KeyFileError,
    VerificationReport,
    load_manifest,
    load_release_public,
    load_root_public,
)
from securechat.attestation.evidence import Platform
from securechat.attestation.platforms import hardware_verifiers
from securechat.client.config import ClientConfig
from securechat.client.errors import AttestationFailed, ConfigError
from securechat.keys import RecipientKey, Suite
from securechat.transparency import FileLastSeen, ReleaseVerifier, TrustPolicy, read_vkey
from securechat.transparency.note import InvalidNote
from securechat.transparency.note_keys import NoteVerifier

MAX_DOCUMENTS = 1024


def load_verifier(config: ClientConfig) -> AttestationVerifier:
    """The verifier for the pinned trust files; a missing or broken file is a ConfigError naming which one.

    The simulated platform's root is read only when the pinned manifest accepts that platform; hardware
    evidence is checked against AMD's and Intel's roots shipped in the package (and ``snp_ark_paths``)."""
    try:
        release = load_release_public(config.release_public_key_path)
    except KeyFileError as exc:
        raise ConfigError(f"release public key {config.release_public_key_path}: {exc}") from None
    try:
        manifest = load_manifest(config.manifest_path)
    except OSError:
        raise ConfigError(f"release manifest {config.manifest_path}: cannot read it") from None
    except ValueError as exc:
        raise ConfigError(f"release manifest {config.manifest_path}: {exc}") from None
    if not manifest.verify(release):
        raise ConfigError(f"release manifest {config.manifest_path} is not signed by the pinned release key")
    root = None
    if manifest.manifest.platforms.allows(Platform.SIMULATED):
        try:
            root = load_root_public(config.root_public_key_path)
        except KeyFileError as exc:
            raise ConfigError(f"pinned root public key {config.root_public_key_path}: {exc}") from None
    try:
        hardware = hardware_verifiers(config.snp_ark_paths)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"pinned SEV-SNP ARK: {exc}") from None
    return AttestationVerifier(root, manifest, release, max_age_s=config.max_age_s, evidence_verifiers=hardware)


def load_release_verifier(config: ClientConfig) -> ReleaseVerifier | None:
    """The release-log check for the pinned log and witness keys; None when no log key is pinned."""
    if config.log_vkey_path is None:
        return None
    log_key = _read_vkey(config.log_vkey_path, "release log key")
    witnesses = tuple(_read_vkey(path, "witness key") for path in config.witness_vkey_paths)
    required = len(witnesses) if config.min_witnesses is None else config.min_witnesses
    try:
        policy = TrustPolicy(log_key, witnesses, required)
    except ValueError as exc:
        raise ConfigError(f"release log trust: {exc}") from None
    return ReleaseVerifier(policy, FileLastSeen(config.log_state_path))


def _read_vkey(path: Path, what: str) -> NoteVerifier:
    try:
        return read_vkey(path.read_text())
    except OSError:
        raise ConfigError(f"{what} {path}: cannot read it") from None
    except (ValueError, InvalidNote):
        raise ConfigError(f"{what} {path}: not a note verifier key (name+hash+base64)") from None


def read_documents(data: Any, region: str, nonce: str) -> list[Mapping[str, Any]]:
    """The documents of a ``GET /v1/attestation`` answer, after checking it answers this region and nonce."""
    if not isinstance(data, Mapping) or data.get("region") != region or data.get("nonce") != nonce:
        raise ValueError("attestation answer does not match the request")
    documents = data.get("documents")
    if not isinstance(documents, list) or len(documents) > MAX_DOCUMENTS:
        raise ValueError("attestation answer has no document list")
    return documents


@dataclass(frozen=True, slots=True)
class VerifiedKeys:
    keys: tuple[RecipientKey, ...]
    valid_until: float  # unix seconds

    @classmethod
    def from_report(
        cls,
        report: VerificationReport,
        region: str,
        suites: Sequence[Suite],
        *,
        ttl_s: float,
        now: float | None = None,
    ) -> VerifiedKeys:
        """One key per verified worker, of the earliest of ``suites`` it offers (the verifier already dropped
        suites the manifest does not allow); AttestationFailed when no worker has one (fail closed)."""
        workers = [worker for worker in report.verified if worker.key_for(suites) is not None]
        if not workers:
            detail = None
            if report.verified:
                names = ", ".join(suite.value for suite in suites)
                detail = f"{len(report.verified)} verified, none with a key of a suite this client seals with ({names})"
            raise AttestationFailed(region, report, detail=detail)
        current = time.time() if now is None else now
        expiry = min(worker.expires_at for worker in workers)
        return cls(tuple(report.recipient_keys(suites)), min(current + ttl_s, float(expiry)))

    def is_fresh(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.valid_until
