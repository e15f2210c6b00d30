"""Why a verifier refused an attestation document: specific enough for an operator, free of document content."""

from __future__ import annotations

from enum import StrEnum


class AttestationFailure(StrEnum):
    """One value per check, in the order ``AttestationVerifier.verify`` runs them."""

    MALFORMED = "malformed"  # fields missing, extra, or not well-formed
    WRONG_ROOT = "wrong_root"  # the certificate names an issuer other than the pinned root
    BAD_SIGNATURE = "bad_signature"  # certificate or document signature does not verify
    CERTIFICATE_SUBJECT = "certificate_subject_mismatch"  # attestation key endorsed for another worker
    CERTIFICATE_EXPIRED = "certificate_expired"  # attestation key used outside its validity window
    NONCE_MISMATCH = "nonce_mismatch"  # a replayed document, or one answering someone else's challenge
    STALE = "stale"  # older than max_age_s
    FROM_FUTURE = "from_future"  # timestamp ahead of the verifier's clock by more than the allowed skew
    MANIFEST_SIGNATURE = "manifest_signature"  # the release manifest itself is not signed by the release key
    REGISTER_NOT_ALLOWED = "register_not_allowed"  # see AttestationError.register for which one
    DEBUG_ENABLED = "debug_enabled"
    KEY_EXPIRED = "key_expired"
    KEY_ID_MISMATCH = "key_id_mismatch"  # a public key that is not the one its key id names
    KEY_INVALID = "key_invalid"  # a public key that does not parse or does not fit its suite
    NO_ALLOWED_SUITE = "no_allowed_suite"  # no key in a suite the release manifest lets clients seal to


class AttestationError(Exception):
    """A document was refused. ``reason`` says which check failed; ``register`` names the register for
    REGISTER_NOT_ALLOWED. Register names are validated identifiers, so the message stays content-free."""

    def __init__(self, reason: AttestationFailure, register: str | None = None) -> None:
        self.reason = reason
        self.register = register
        detail = f"{reason.value}:{register}" if register else reason.value
        super().__init__(f"attestation refused: {detail}")
