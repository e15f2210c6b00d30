"""Request bodies and the error body of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from securechat.engine.base import MAX_PENALTY, MAX_STOP_CHARS, MAX_STOP_STRINGS, MIN_TEMPERATURE
from securechat.rag.manifest import MAX_MANIFEST_BYTES

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
Mode = Literal["plain", "rag", "ingest", "search", "embed"]
COLLECTION_BOUND_MODES = frozenset({"rag", "ingest", "search"})


MAX_MANIFEST_B64_CHARS = (MAX_MANIFEST_BYTES + 2) // 3 * 4


class InferRequest(BaseModel):
    """POST /infer. Either ``prompt`` (sealed at the gateway) or ``envelope`` (sealed by the client).

    ``collection_id`` names the collection of a ``rag``, ``ingest`` or ``search`` request (the host checks it
    exists and belongs to the tenant; the worker uses the one sealed in the envelope, under the client's key).
    ``collection_key`` is for a gateway-sealed ``rag`` prompt only: the TLS-terminating gateway seals it with
    the prompt at once and keeps nothing.
    """

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN)
    mode: Mode = "plain"
    region: str = Field(pattern=ID_PATTERN)
    prompt: str | None = Field(default=None, min_length=1)
    envelope: dict[str, Any] | None = None
    collection_id: str | None = Field(default=None, pattern=ID_PATTERN)
    collection_key: str | None = Field(default=None, max_length=64)
    top_k: int | None = Field(default=None, ge=1, le=20)
    max_new_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=10.0, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stop: list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]] | None = Field(
        default=None, max_length=MAX_STOP_STRINGS
    )
    presence_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)
    frequency_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)

    @model_validator(mode="after")
    def _exactly_one_payload(self) -> InferRequest:
        if (self.prompt is None) == (self.envelope is None):
            raise ValueError("give exactly one of prompt or envelope")
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}")
        if (self.mode in COLLECTION_BOUND_MODES) != (self.collection_id is not None):
            raise ValueError("collection_id is required for modes rag, ingest and search, and only for them")
        if self.prompt is not None and self.mode not in ("plain", "rag"):
            raise ValueError("ingest, search and embed take a client-sealed envelope")
        if (self.prompt is not None and self.mode == "rag") != (self.collection_key is not None):
            raise ValueError("collection_key goes with a gateway-sealed rag prompt, and only there")
        return self


class SealedOperation(BaseModel):
    """The body of the collection routes that run in a worker (ingest, search, embeddings): a sealed envelope."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN)
    region: str = Field(pattern=ID_PATTERN)
    envelope: dict[str, Any]


class DocumentDeletion(BaseModel):
    """Deleting a document: the collection's next manifest comes with it (base64), written by the client, the
    key holder; the host reads its counter for the store's compare-and-swap and can neither check nor change it."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN)
    manifest: str = Field(min_length=1, max_length=MAX_MANIFEST_B64_CHARS)


class NewCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN)
