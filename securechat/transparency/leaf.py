"""How a signed release manifest becomes a log leaf.

Leaf data is the canonical JSON of the whole signed manifest (manifest and release-key signature), the exact
bytes ``save_manifest`` writes without its final newline. So each entry is self-verifying (anyone can check
the release key signed it), a client computes the leaf hash from the manifest file it already pins, and an
auditor can hash the files a release published and find them in the log.
"""

from __future__ import annotations

import json

from securechat.attestation import SignedManifest
from securechat.attestation._canonical import canonical_json
from securechat.attestation.manifest import MAX_MANIFEST_BYTES
from securechat.transparency.merkle import leaf_hash


def manifest_leaf_data(signed: SignedManifest) -> bytes:
    return canonical_json(signed.to_dict())


def manifest_leaf_hash(signed: SignedManifest) -> bytes:
    """The RFC 6962 leaf hash, SHA-256(0x00 || leaf data): the id a client asks the log a proof for."""
    return leaf_hash(manifest_leaf_data(signed))


def manifest_from_leaf(data: bytes) -> SignedManifest:
    """Parse an entry back into a manifest; ValueError unless it is a canonical signed manifest."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError("log entry too large")
    try:
        signed = SignedManifest.from_dict(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        raise ValueError("log entry is not a signed manifest") from None
    if manifest_leaf_data(signed) != data:
        raise ValueError("log entry is not in canonical form")
    return signed
