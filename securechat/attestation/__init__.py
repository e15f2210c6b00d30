"""Simulated attestation: measure a worker, sign what it is, and let senders verify before they seal.

Ray-free, like the rest of the core. See platform_root for the chain of trust and measurement for what each
register covers.
"""

from securechat.attestation._keyfile import KeyFileError
from securechat.attestation.certificate import AttestationKeyCertificate
from securechat.attestation.document import AttestationDocument, Attester, issue_document
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.manifest import (
    ReleaseManifest,
    SignedManifest,
    build_manifest,
    create_release_key,
    load_manifest,
    load_release_key,
    load_release_public,
    manifest_for_registers,
    save_manifest,
    sign_manifest,
)
from securechat.attestation.measurement import (
    measure_code,
    measure_config,
    measure_for_engine,
    measure_model,
    measure_worker,
    model_dir_for,
    runtime_config,
)
from securechat.attestation.platform_root import (
    create_root,
    default_root_path,
    ensure_root,
    load_root,
    load_root_public,
    root_id,
)
from securechat.attestation.verifier import (
    AttestationVerifier,
    DocumentVerifier,
    Refusal,
    VerificationReport,
    VerifiedWorker,
    new_nonce,
)

__all__ = [
    "AttestationDocument",
    "AttestationError",
    "AttestationFailure",
    "AttestationKeyCertificate",
    "AttestationVerifier",
    "Attester",
    "DocumentVerifier",
    "KeyFileError",
    "Refusal",
    "ReleaseManifest",
    "SignedManifest",
    "VerificationReport",
    "VerifiedWorker",
    "build_manifest",
    "create_release_key",
    "create_root",
    "default_root_path",
    "ensure_root",
    "issue_document",
    "load_manifest",
    "load_release_key",
    "load_release_public",
    "load_root",
    "load_root_public",
    "manifest_for_registers",
    "measure_code",
    "measure_config",
    "measure_for_engine",
    "measure_model",
    "measure_worker",
    "model_dir_for",
    "new_nonce",
    "root_id",
    "runtime_config",
    "save_manifest",
    "sign_manifest",
]
