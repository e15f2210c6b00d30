"""What every OpenAI-shaped route of the proxy shares: the model id, reading a request body (every parameter
honoured or refused by name, none ignored), and the shapes of usage, log probabilities and tool calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar

from pydantic import BaseModel, ValidationError

from securechat.engine.base import TokenLogprob
from securechat.proxy.errors import ProxyError, ProxyRefusal, invalid_request
from securechat.structured.spec import InvalidOutputSpec
from securechat.structured.tool_calls import ToolCall

MODEL_ID: Final = "securechat"
DEFAULT_TEMPERATURE: Final = 1.0  # OpenAI's documented default for an omitted temperature
MAX_BODY_BYTES: Final = 4 << 20
# Parameters that cannot change the answer, so accepting them hides nothing.
NO_EFFECT: Final = frozenset({"user", "metadata", "service_tier", "safety_identifier", "prompt_cache_key"})

Request = TypeVar("Request", bound="CheckedRequest")


class UnsupportedParameter(ValueError):
    """A parameter the proxy will not pretend to honour; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class CheckedRequest(BaseModel):
    """A request model whose unknown fields are kept (``extra="allow"``) so they can be refused by name."""

    #: Fields accepted only at the values that ask for nothing (e.g. ``logit_bias: {}``).
    neutral: ClassVar[Mapping[str, tuple[object, ...]]] = {}

    def check_supported(self) -> None:
        """Raise UnsupportedParameter for the first parameter that would be silently dropped."""
        for name, value in (self.model_extra or {}).items():
            if name in NO_EFFECT or (name in self.neutral and value in self.neutral[name]):
                continue
            raise UnsupportedParameter(name, f"{name} is not supported by the SecureChat proxy")


def parse_request(raw: bytes, content_type: str, model: type[Request]) -> Request:
    """The request body as ``model``, checked; ProxyRefusal with the answer to give when it is not one."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ProxyRefusal(invalid_request("send Content-Type: application/json", status=415))
    if len(raw) > MAX_BODY_BYTES:
        raise ProxyRefusal(invalid_request("the request body is too large", status=413))
    try:
        parsed = model.model_validate_json(raw)
        parsed.check_supported()
    except ValidationError as exc:
        first = exc.errors()[0]  # name the field, never echo the input (it may hold the prompt)
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ProxyRefusal(invalid_request(f"invalid request: {first['msg']}", param)) from None
    except UnsupportedParameter as unsupported:
        raise ProxyRefusal(unsupported_parameter(unsupported.param, str(unsupported))) from None
    except InvalidOutputSpec as invalid:
        raise ProxyRefusal(invalid_request(str(invalid), invalid.param)) from None
    return parsed


def unsupported_parameter(param: str, message: str) -> ProxyError:
    if param == "model":
        return ProxyError(404, "invalid_request_error", "model_not_found", message, param)
    return ProxyError(400, "invalid_request_error", "unsupported_parameter", message, param)


def check_model(model: str) -> None:
    if model != MODEL_ID:
        raise UnsupportedParameter("model", f"the model is {MODEL_ID!r}")


def usage(metrics: Mapping[str, Any]) -> dict[str, int]:
    prompt_tokens = int(metrics.get("input_tokens", 0))
    completion_tokens = int(metrics.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def token_text(raw: bytes) -> str:
    """A token's text as OpenAI gives it: its bytes decoded, a partial character as U+FFFD (``bytes`` is exact)."""
    return raw.decode("utf-8", errors="replace")


def logprob_entry(entry: TokenLogprob) -> dict[str, Any]:
    """One token of a chat answer's ``logprobs.content``."""
    return {
        "token": token_text(entry.token),
        "logprob": entry.logprob,
        "bytes": list(entry.token),
        "top_logprobs": [{"token": token_text(t), "logprob": v, "bytes": list(t)} for t, v in entry.top],
    }


def chat_logprobs(entries: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
    return None if entries is None else {"content": [logprob_entry(entry) for entry in entries], "refusal": None}


def tool_call_dict(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if index is not None:
        data["index"] = index  # streamed deltas say which call of the choice they belong to
    return data


def models_list() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "securechat"}]}


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """Every error the proxy answers, in OpenAI's shape; messages are content-free."""

    error: OpenAIErrorDetail


# What an OpenAI route of the proxy can answer besides 200: its own refusals (400, 404, 413, 415), the
# service's passed through (401, 403, 404, 409, 413, 415, 429, 503), 500 for a broken local setup, 502 when
# attestation or the answer's verification failed or the service ended the answer with an error.
ROUTE_STATUSES: Final = (400, 401, 403, 404, 409, 413, 415, 429, 500, 502, 503)


def error_responses(statuses: tuple[int, ...] = ROUTE_STATUSES) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": OpenAIErrorBody, "description": "an OpenAI-shaped error"} for status in statuses}


def json_or_events() -> dict[int | str, dict[str, Any]]:
    """The 200 of a route that answers JSON, or server-sent events with ``stream: true``."""
    content = {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}}
    return {200: {"description": "the answer, or its events when streamed", "content": content}}
