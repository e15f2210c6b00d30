"""Verify before you send: check an attestation document, then hand back only keys that passed.

Checks run in a fixed order (the order of ``AttestationFailure``), each refusing with its own reason, so an
operator reading ``attestation refused: stale`` knows what to fix: the platform must be one the manifest
accepts; its evidence must verify against the roots pinned for that platform (``EvidenceVerifier``) and carry
exactly this document's report data (so the nonce, the keys and the registers are the ones the platform
vouched for); then the release's policy: launch measurements and TCB, registers, debug off, key expiry, and a
key of a suite the manifest allows. Nothing is trusted before the evidence verifies; the manifest's signature
is checked before any measurement or register is compared with it.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation._canonical import read_hex
from securechat.attestation.document import NONCE_MAX_HEX, NONCE_MIN_HEX, AttestationDocument
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.evidence import Claims, EvidenceVerifier, Platform
from securechat.attestation.manifest import SignedManifest
from securechat.attestation.simulated import SimulatedVerifier
from securechat.keys import RecipientKey, Suite, key_id_for, preferred_key
from securechat.logs import get_logger, log_event

logger = get_logger("attestation")

NONCE_BYTES = 32
DEFAULT_MAX_AGE_S = 60.0
DEFAULT_MAX_SKEW_S = 5.0  # clocks of verifier and worker host may disagree by this much


def new_nonce() -> str:
    """A fresh challenge; send it with the key-directory request and pass it to ``verify``."""
    return secrets.token_hex(NONCE_BYTES)


@dataclass(frozen=True, slots=True)
class VerifiedWorker:
    worker_id: str
    keys: tuple[RecipientKey, ...]  # only keys of suites the pinned manifest allows
    expires_at: int  # unix seconds: the earlier of key expiry and the evidence's validity; refetch before then
    registers: Mapping[str, str]
    claims: Claims | None = None  # what the platform's evidence proved (platform, measurements, TCB)

    @property
    def platform(self) -> Platform:
        return Platform.SIMULATED if self.claims is None else self.claims.platform

    def key_for(self, suites: Sequence[Suite]) -> RecipientKey | None:
        """The key to seal to: of ``suites``, the earliest this worker offers (None: none of them)."""
        return preferred_key(self.keys, suites)


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # position in the list given to verify_all
    reason: AttestationFailure
    register: str | None
    claimed_worker_id: str | None  # as the document claims it, unverified; None if it did not parse


@dataclass(frozen=True, slots=True)
class VerificationReport:
    verified: tuple[VerifiedWorker, ...]
    refused: tuple[Refusal, ...]

    def recipient_keys(self, suites: Sequence[Suite]) -> list[RecipientKey]:
        """Keys to seal to, one per verified worker that offers one of ``suites`` (the earliest it offers).
        Empty means seal to no one, never to unverified keys."""
        return [key for worker in self.verified if (key := worker.key_for(suites)) is not None]


class DocumentVerifier(Protocol):
    """What a sealer needs: a document and the nonce it sent in, a verified worker out, or AttestationError."""

    def verify(self, document: Mapping[str, Any], expected_nonce: str) -> VerifiedWorker: ...


class AttestationVerifier:
    """Documents against a pinned manifest and the roots pinned for each platform.

    ``pinned_root_public_key`` is the simulated platform's root (None: no simulated evidence can verify);
    ``evidence_verifiers`` adds the hardware platforms (``hardware_verifiers()``: AMD's and Intel's pinned
    roots). A platform without a verifier here is refused as ``wrong_root``; one the manifest does not list, as
    ``platform_not_allowed``.
    """

    def __init__(
        self,
        pinned_root_public_key: ed25519.Ed25519PublicKey | None,
        manifest: SignedManifest,
        release_public_key: ed25519.Ed25519PublicKey,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        clock: Callable[[], float] = time.time,
        evidence_verifiers: Mapping[Platform, EvidenceVerifier] | None = None,
    ) -> None:
        if max_age_s <= 0 or max_skew_s < 0:
            raise ValueError("max_age_s must be positive and max_skew_s non-negative")
        self._verifiers: dict[Platform, EvidenceVerifier] = dict(evidence_verifiers or {})
        if pinned_root_public_key is not None:
            self._verifiers[Platform.SIMULATED] = SimulatedVerifier(pinned_root_public_key, max_skew_s=max_skew_s)
        self._manifest = manifest
        # The manifest is frozen, so its signature is checked once; verify() still refuses at its turn.
        self._manifest_ok = manifest.verify(release_public_key)
        self._max_age_s = max_age_s
        self._max_skew_s = max_skew_s
        self._clock = clock

    @property
    def manifest(self) -> SignedManifest:
        """The pinned release manifest every document's registers are checked against."""
        return self._manifest

    def verify(self, document: Mapping[str, Any], expected_nonce: str) -> VerifiedWorker:
        read_hex(expected_nonce, min_chars=NONCE_MIN_HEX, max_chars=NONCE_MAX_HEX)  # a caller bug, not a refusal
        now = self._clock()  # one reading, so every time check sees the same instant
        try:
            parsed = AttestationDocument.from_dict(document)
        except (ValueError, TypeError):
            self._log_refusal(AttestationError(AttestationFailure.MALFORMED), None)
            raise AttestationError(AttestationFailure.MALFORMED) from None
        try:
            worker = self._check(parsed, expected_nonce, now)
        except AttestationError as exc:
            self._log_refusal(exc, parsed.worker_id)
            raise
        log_event(
            logger,
            "worker_attested",
            worker_id=worker.worker_id,
            num_keys=len(worker.keys),
            platform=worker.platform.value,
        )
        return worker

    def verify_all(self, documents: Iterable[Mapping[str, Any]], nonce: str) -> VerificationReport:
        """Verify each document on its own; the report keeps verified workers and refusals apart."""
        verified: list[VerifiedWorker] = []
        refused: list[Refusal] = []
        for index, document in enumerate(documents):
            try:
                verified.append(self.verify(document, nonce))
            except AttestationError as exc:
                refused.append(Refusal(index, exc.reason, exc.register, _claimed_worker_id(document)))
        return VerificationReport(tuple(verified), tuple(refused))

    def _check(self, document: AttestationDocument, expected_nonce: str, now: float) -> VerifiedWorker:
        policy = self._manifest.manifest.platforms
        if not policy.allows(document.platform):
            raise AttestationError(AttestationFailure.PLATFORM_NOT_ALLOWED)
        verifier = self._verifiers.get(document.platform)
        if verifier is None:  # a platform whose roots this client does not pin
            raise AttestationError(AttestationFailure.WRONG_ROOT)
        claims = verifier.verify(document.evidence, now)
        if claims.platform is not document.platform:
            raise AttestationError(AttestationFailure.MALFORMED)
        # The simulated platform endorses its attestation key for one worker id; a real key speaking for
        # another worker is refused here (hardware evidence is bound to the worker id through the report data).
        if claims.worker_id is not None and claims.worker_id != document.worker_id:
            raise AttestationError(AttestationFailure.CERTIFICATE_SUBJECT)
        if not hmac.compare_digest(document.nonce, expected_nonce):
            raise AttestationError(AttestationFailure.NONCE_MISMATCH)
        if not hmac.compare_digest(claims.report_data, document.report_data()):
            raise AttestationError(AttestationFailure.REPORT_DATA_MISMATCH)
        if document.timestamp > now + self._max_skew_s:
            raise AttestationError(AttestationFailure.FROM_FUTURE)
        if now - document.timestamp > self._max_age_s:
            raise AttestationError(AttestationFailure.STALE)
        if not self._manifest_ok:
            raise AttestationError(AttestationFailure.MANIFEST_SIGNATURE)
        policy.check(claims)
        self._check_registers(document)
        if claims.debug:
            raise AttestationError(AttestationFailure.DEBUG_ENABLED)
        if document.key_expiry <= now:
            raise AttestationError(AttestationFailure.KEY_EXPIRED)
        for key in document.public_keys:
            _check_key(key)
        # Only keys of the suites the release allows are ever handed out: a host that offers a classical key
        # alone (to record what is sealed to it) gets the worker refused, not the client downgraded.
        allowed = self._manifest.manifest.suites
        keys = tuple(key for key in document.public_keys if key.suite in allowed)
        if not keys:
            raise AttestationError(AttestationFailure.NO_ALLOWED_SUITE)
        valid_until = (
            document.key_expiry if claims.valid_until is None else min(document.key_expiry, claims.valid_until)
        )
        return VerifiedWorker(
            worker_id=document.worker_id,
            keys=keys,
            expires_at=valid_until,
            registers=document.registers,
            claims=claims,
        )

    def _check_registers(self, document: AttestationDocument) -> None:
        # Every register the manifest names must be present and allowed, and a register the manifest does not
        # know is refused too: an unmeasured component is not an accepted one.
        for name in sorted(set(self._manifest.manifest.registers) | set(document.registers)):
            value = document.registers.get(name)
            if value is None or not self._manifest.manifest.allows(name, value):
                raise AttestationError(AttestationFailure.REGISTER_NOT_ALLOWED, register=name)

    def _log_refusal(self, error: AttestationError, worker_id: str | None) -> None:
        reason = f"{error.reason.value}:{error.register}" if error.register else error.reason.value
        claimed = {} if worker_id is None else {"worker_id": worker_id}  # unverified, but a checked identifier
        log_event(logger, "attestation_refused", level=logging.WARNING, reason=reason, **claimed)


def _check_key(key: RecipientKey) -> None:
    if not hmac.compare_digest(key_id_for(key.public_key_bytes), key.key_id):
        raise AttestationError(AttestationFailure.KEY_ID_MISMATCH)
    try:
        key.load()  # checks the key parses and fits its suite (RSA size, X25519 type, hybrid length)
    except (ValueError, UnsupportedAlgorithm):
        raise AttestationError(AttestationFailure.KEY_INVALID) from None


def _claimed_worker_id(document: object) -> str | None:
    try:
        return AttestationDocument.from_dict(document).worker_id
    except (ValueError, TypeError):
        return None
