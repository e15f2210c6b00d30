"""Report data: the 64 bytes that tie a platform's report to one worker's keys and registers and to one nonce.

A platform signs 64 bytes of the guest's choosing with every report (SNP ``REPORT_DATA``, TDX
``REPORTDATA``). The worker puts there::

    report_data = SHA-512( "securechat/report-data/v1" NUL
                           len(nonce):u16 BE || nonce        (the verifier's challenge, ASCII hex as sent)
                           SHA-256(keys statement)           (canonical JSON, below)
                           SHA-256(registers) )              (canonical JSON of {name: hex digest})

    keys statement = {"worker_id": ..., "key_expiry": ..., "timestamp": ...,
                      "public_keys": [{"suite", "key_id", "public_key"}, ...]}   (every suite, in document order)

Canonical JSON: sorted keys, no spaces, ASCII. So a verified report vouches, through the nonce, that it is
fresh; through the keys statement, for exactly the keys a client will seal to (and their expiry and the worker
they belong to); and through the registers, for the code, runtime config, model and embedder the worker
measured itself to be running. The launch measurement (SNP ``MEASUREMENT``, TDX ``MRTD`` and RTMRs) proves the
image, and it is that image's code that computed the registers and chose the report data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final

from securechat.attestation._canonical import canonical_json
from securechat.keys import RecipientKey

DOMAIN: Final = b"securechat/report-data/v1\x00"


def keys_digest(worker_id: str, public_keys: Sequence[RecipientKey], key_expiry: int, timestamp: int) -> bytes:
    statement = {
        "worker_id": worker_id,
        "key_expiry": key_expiry,
        "timestamp": timestamp,
        "public_keys": [key.to_dict() for key in public_keys],
    }
    return hashlib.sha256(canonical_json(statement)).digest()


def registers_digest(registers: Mapping[str, str]) -> bytes:
    return hashlib.sha256(canonical_json(dict(registers))).digest()


def report_data_for(
    nonce: str,
    worker_id: str,
    public_keys: Sequence[RecipientKey],
    key_expiry: int,
    timestamp: int,
    registers: Mapping[str, str],
) -> bytes:
    encoded_nonce = nonce.encode("ascii")
    digest = hashlib.sha512(DOMAIN)
    digest.update(len(encoded_nonce).to_bytes(2, "big") + encoded_nonce)
    digest.update(keys_digest(worker_id, public_keys, key_expiry, timestamp))
    digest.update(registers_digest(registers))
    return digest.digest()
