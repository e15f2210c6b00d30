"""Errors that may cross a trust boundary: opaque for crypto, content-free codes for everything else."""

from __future__ import annotations

from enum import StrEnum


class InvalidCiphertext(Exception):
    """The one error for every cryptographic failure: bad key, tag, header, sequence, recipient or truncation.

    It never says which check failed (no oracle) and never carries data.
    """

    def __init__(self) -> None:
        super().__init__("invalid ciphertext")


class InvalidFrame(ValueError):
    """Wire framing is broken: a short, empty, oversize or trailing-garbage frame."""


class ErrorCode(StrEnum):
    """Content-free failure codes, shared by error frames, HTTP bodies, logs and metrics."""

    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    REGION_NOT_ALLOWED = "region_not_allowed"
    RATE_LIMITED = "rate_limited"
    TOKEN_LIMITED = "token_limited"
    TOO_MANY_STREAMS = "too_many_streams"
    MAX_NEW_TOKENS_EXCEEDED = "max_new_tokens_exceeded"
    INVALID_ENVELOPE = "invalid_envelope"
    STALE_KEYS = "stale_keys"
    REPLAYED_ENVELOPE = "replayed_envelope"  # a worker ran this envelope already, or it expired
    DUPLICATE_REQUEST = "duplicate_request"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_ACCEPTABLE = "not_acceptable"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PROMPT_TOO_LONG = "prompt_too_long"
    UNKNOWN_REGION = "unknown_region"
    MODE_NOT_SUPPORTED = "mode_not_supported"
    NO_WORKER = "no_worker_available"
    WORKER_LOST = "worker_lost"
    UPSTREAM_LOST = "upstream_lost"  # the orchestrator (or the hop to it) failed
    ENGINE_FAILED = "engine_failed"
    OVERLOADED = "overloaded"
    DATABASE_UNAVAILABLE = "database_unavailable"  # the tenant or document database cannot be reached
    ISSUER_UNAVAILABLE = "issuer_unavailable"  # a token's identity provider has no keys at hand and is unreachable
    CANCELLED = "cancelled"
    INTERNAL = "internal_error"
    # Collections (RAG): the host's own refusals, and a worker's about a document it could not take.
    UNKNOWN_COLLECTION = "unknown_collection"
    UNKNOWN_DOCUMENT = "unknown_document"
    COLLECTION_EXISTS = "collection_exists"
    TOO_MANY_DOCUMENTS = "too_many_documents"
    TOO_MANY_CHUNKS = "too_many_chunks"
    DOCUMENT_EMPTY = "document_empty"
    DOCUMENT_TOO_LARGE = "document_too_large"
    UNSUPPORTED_DOCUMENT_TYPE = "unsupported_document_type"
    DOCUMENT_TYPE_MISMATCH = "document_type_mismatch"  # the bytes are not of the type the file declares
    DOCUMENT_MALFORMED = "malformed_document"  # a PDF, Word or HTML file that does not parse
    DOCUMENT_ENCRYPTED = "encrypted_document"  # a password-protected PDF
    NO_TEXT_LAYER = "no_text_layer"  # a PDF of scanned pages: no text to index
    DOCUMENT_TOO_COMPLEX = "document_too_complex"  # over the worker's time or memory budget for one document
    # A collection's state as the store holds it is not what its key holder last wrote (securechat.rag.manifest).
    STALE_COLLECTION = "stale_collection"  # older than the newest state the client has seen
    COLLECTION_TAMPERED = "collection_tampered"  # blobs or manifest that the collection key does not vouch for
    COLLECTION_CHANGED = "collection_changed"  # another writer moved the state on first: read it again, retry
    # The release log (securechat.transparency): public data, served or not.
    NO_TRANSPARENCY_LOG = "no_transparency_log"
    NO_CHECKPOINT = "no_checkpoint"
    LOG_CORRUPTED = "log_corrupted"
