"""Attestation: measure a worker, have its platform vouch for it, and let senders verify before they seal.

Ray-free, like the rest of the core. Each platform is a module behind one contract (``evidence``): the simulated
one (``simulated``, with ``platform_root`` and ``certificate``), AMD SEV-SNP (``sev_snp``, with an emulated
platform for development) and Intel TDX (``tdx``); ``configfs_tsm`` collects reports in a confidential VM.
``binding`` says what a report vouches for, ``measurement`` what each register covers, ``manifest`` and
``policy`` what a release accepts, ``verifier`` checks a document against them.
"""

from securechat.attestation._keyfile import KeyFileError
from securechat.attestation.certificate import AttestationKeyCertificate
from securechat.attestation.document import AttestationDocument, Attester, issue_document
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.evidence import Claims, EvidenceSource, EvidenceVerifier, Platform
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
from securechat.attestation.policy import SIMULATED_ONLY, PlatformPolicy, SnpPolicy, TdxPolicy
from securechat.attestation.verifier import (
    AttestationVerifier,
    DocumentVerifier,
    Refusal,
    VerificationReport,
    VerifiedWorker,
    new_nonce,
)

__all__ = [
    "SIMULATED_ONLY",
    "AttestationDocument",
    "AttestationError",
    "AttestationFailure",
    "AttestationKeyCertificate",
    "AttestationVerifier",
    "Attester",
    "Claims",
    "DocumentVerifier",
    "EvidenceSource",
    "EvidenceVerifier",
    "KeyFileError",
    "Platform",
    "PlatformPolicy",
    "Refusal",
    "ReleaseManifest",
    "SignedManifest",
    "SnpPolicy",
    "TdxPolicy",
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
