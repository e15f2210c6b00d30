"""Why a verifier refused an attestation document: specific enough for an operator, free of document content."""

from __future__ import annotations

from enum import StrEnum


class AttestationFailure(StrEnum):
    """One value per check, in the order ``AttestationVerifier.verify`` runs them."""

    MALFORMED = "malformed"  # fields missing, extra, or not well-formed (the evidence included)
    PLATFORM_NOT_ALLOWED = "platform_not_allowed"  # the manifest does not accept evidence of this platform
    # -- the evidence itself (evidence verifiers) --
    WRONG_ROOT = "wrong_root"  # the chain does not end at a pinned root
    BAD_SIGNATURE = "bad_signature"  # a certificate, report, quote or document signature does not verify
    CERTIFICATE_EXPIRED = "certificate_expired"  # a certificate used outside its validity window
    SIGNING_KEY_MISMATCH = "signing_key_mismatch"  # SNP: a VLEK presented as a VCEK (or the reverse)
    TCB_MISMATCH = "tcb_mismatch"  # SNP: the VCEK is not the one for the report's REPORTED_TCB
    CHIP_MISMATCH = "chip_mismatch"  # SNP: the VCEK belongs to another chip
    COLLATERAL_INVALID = "collateral_invalid"  # TDX: collateral expired, revoked, for another platform, or forged
    TD_ATTRIBUTES_NOT_ALLOWED = "td_attributes_not_allowed"  # TDX: e.g. SEPT_VE_DISABLE off
    CERTIFICATE_SUBJECT = "certificate_subject_mismatch"  # simulated: attestation key endorsed for another worker
    # -- the evidence's binding to this document and this challenge --
    NONCE_MISMATCH = "nonce_mismatch"  # a replayed document, or one answering someone else's challenge
    REPORT_DATA_MISMATCH = "report_data_mismatch"  # the report vouches for other keys, registers or nonce
    STALE = "stale"  # older than max_age_s
    FROM_FUTURE = "from_future"  # timestamp ahead of the verifier's clock by more than the allowed skew
    # -- the release's policy (the manifest) --
    MANIFEST_SIGNATURE = "manifest_signature"  # the release manifest itself is not signed by the release key
    MEASUREMENT_NOT_ALLOWED = "measurement_not_allowed"  # a launch measurement the manifest does not list
    PRODUCT_NOT_ALLOWED = "product_not_allowed"  # SNP: a processor line the manifest sets no TCB floor for
    TCB_TOO_OLD = "tcb_too_old"  # SNP: a TCB component below the manifest's minimum
    TCB_STATUS_NOT_ALLOWED = "tcb_status_not_allowed"  # TDX: e.g. OutOfDate, unless the manifest accepts it
    VLEK_NOT_ALLOWED = "vlek_not_allowed"  # SNP: signed by a VLEK where the manifest accepts VCEKs only
    REGISTER_NOT_ALLOWED = "register_not_allowed"  # see AttestationError.register for which one
    DEBUG_ENABLED = "debug_enabled"  # a debuggable guest (SNP policy bit 19, TDX attribute DEBUG)
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
