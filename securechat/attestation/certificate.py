"""The middle link of the chain: the root's statement that an attestation key speaks for one worker."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation._canonical import b64decode, b64encode, exact_keys, read_hex, read_int, signed_bytes
from securechat.attestation.platform_root import root_id
from securechat.envelope import is_valid_id
from securechat.keys import KEY_ID_HEX_CHARS

_DOMAIN: Final = b"securechat-attestation-key-certificate-v1"
_FIELDS: Final = frozenset({"subject", "issuer", "public_key", "not_before", "not_after", "signature"})
ED25519_KEY_BYTES: Final = 32
ED25519_SIGNATURE_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class AttestationKeyCertificate:
    subject: str  # the worker id this key may attest
    issuer: str  # root_id() of the signing root
    public_key: bytes  # raw Ed25519 attestation key
    not_before: int  # unix seconds
    not_after: int
    signature: bytes

    def tbs_bytes(self) -> bytes:
        """The exact bytes the root signs ("to be signed", as in X.509)."""
        body = {
            "subject": self.subject,
            "issuer": self.issuer,
            "public_key": b64encode(self.public_key),
            "not_before": self.not_before,
            "not_after": self.not_after,
        }
        return signed_bytes(_DOMAIN, body)

    def verify_issued_by(self, root: ed25519.Ed25519PublicKey) -> bool:
        try:
            root.verify(self.signature, self.tbs_bytes())
        except InvalidSignature:
            return False
        return True

    def attestation_key(self) -> ed25519.Ed25519PublicKey:
        return ed25519.Ed25519PublicKey.from_public_bytes(self.public_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "public_key": b64encode(self.public_key),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "signature": b64encode(self.signature),
        }

    @classmethod
    def from_dict(cls, data: object) -> AttestationKeyCertificate:
        fields = exact_keys(data, _FIELDS)
        if not is_valid_id(fields["subject"]):
            raise ValueError("invalid certificate subject")
        public_key = b64decode(fields["public_key"], max_bytes=ED25519_KEY_BYTES)
        signature = b64decode(fields["signature"], max_bytes=ED25519_SIGNATURE_BYTES)
        if len(public_key) != ED25519_KEY_BYTES or len(signature) != ED25519_SIGNATURE_BYTES:
            raise ValueError("invalid certificate key or signature length")
        cert = cls(
            subject=fields["subject"],
            issuer=read_hex(fields["issuer"], min_chars=KEY_ID_HEX_CHARS, max_chars=KEY_ID_HEX_CHARS),
            public_key=public_key,
            not_before=read_int(fields["not_before"]),
            not_after=read_int(fields["not_after"]),
            signature=signature,
        )
        if cert.not_after <= cert.not_before:
            raise ValueError("invalid certificate validity")
        return cert


def endorse_attestation_key(
    root: ed25519.Ed25519PrivateKey,
    worker_id: str,
    attestation_key: ed25519.Ed25519PublicKey,
    *,
    now: int,
    ttl_s: int,
) -> AttestationKeyCertificate:
    if not is_valid_id(worker_id) or ttl_s <= 0:
        raise ValueError("invalid worker id or certificate lifetime")
    unsigned = AttestationKeyCertificate(
        subject=worker_id,
        issuer=root_id(root.public_key()),
        public_key=attestation_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        not_before=now,
        not_after=now + ttl_s,
        signature=b"",
    )
    return replace(unsigned, signature=root.sign(unsigned.tbs_bytes()))
