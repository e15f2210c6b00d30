"""The SecureChat client SDK: verify the workers' attestation, seal to verified keys only, decrypt the answer.

from securechat.client import ClientConfig, SecureChatClient

with SecureChatClient(ClientConfig.from_env(tenant_id="tenant1")) as client:
    for piece in client.stream("Hello!"):
        print(piece, end="", flush=True)
"""

from securechat.attestation.offline import snp_evidence_from_files, tdx_evidence_from_files, verify_evidence
from securechat.client.config import ClientConfig
from securechat.client.errors import AttestationFailed, ClientError, ConfigError, ReleaseNotLogged, ServiceError
from securechat.client.messages import Prompt, Sampling
from securechat.client.sdk import SecureChatClient
from securechat.client.stream import CompletionStream
from securechat.errors import InvalidCiphertext
from securechat.response import Completion, ResponseFailed

__all__ = [
    "AttestationFailed",
    "ClientConfig",
    "ClientError",
    "Completion",
    "CompletionStream",
    "ConfigError",
    "InvalidCiphertext",
    "Prompt",
    "ReleaseNotLogged",
    "ResponseFailed",
    "Sampling",
    "SecureChatClient",
    "ServiceError",
    "snp_evidence_from_files",
    "tdx_evidence_from_files",
    "verify_evidence",
]
