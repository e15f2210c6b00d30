"""SecureChat core: sealed envelopes, encrypted token streams and the enclave worker, with no Ray inside."""

from securechat.envelope import Envelope, SealedRequest, open_request, seal_request
from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.keys import RecipientKey, Suite, WorkerKeys
from securechat.stream import ResponseOpener
from securechat.worker import EnclaveWorker

__all__ = [
    "EnclaveWorker",
    "Envelope",
    "ErrorCode",
    "InvalidCiphertext",
    "RecipientKey",
    "ResponseOpener",
    "SealedRequest",
    "Suite",
    "WorkerKeys",
    "open_request",
    "seal_request",
]
