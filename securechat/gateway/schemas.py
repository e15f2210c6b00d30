"""Request bodies and the error body of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from securechat.engine.base import MIN_TEMPERATURE

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"


class InferRequest(BaseModel):
    """POST /infer. Either ``prompt`` (sealed at the gateway) or ``envelope`` (sealed by the client)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=ID_PATTERN)
    mode: Literal["plain", "rag"] = "plain"
    region: str = Field(pattern=ID_PATTERN)
    prompt: str | None = Field(default=None, min_length=1)
    envelope: dict[str, Any] | None = None
    max_new_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=10.0, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _exactly_one_payload(self) -> InferRequest:
        if (self.prompt is None) == (self.envelope is None):
            raise ValueError("give exactly one of prompt or envelope")
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}")
        return self
