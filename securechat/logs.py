"""Content-free logging: the one way the package logs.

Every record is an event name plus allow-listed fields (ids, states, timings, counts, sizes, error codes).
A field that is not on the list is refused at the call site (a programming error), and string values are
checked to be short identifiers, so prompt or output text cannot reach a log line by accident.
"""

from __future__ import annotations

import logging
import re
from typing import Final

ALLOWED_FIELDS: Final = frozenset(
    {
        # ids
        "request_id",
        "worker_id",
        "tenant_id",
        "key_id",
        "replica_id",
        "region",
        "mode",
        "suite",
        "platform",
        "issuer",  # an identity provider's host, from config
        "model",
        "engine",
        "deployment",
        "attempt",
        "status_code",
        # state
        "state",
        "from_state",
        "to_state",
        "error_code",
        "reason",
        "dtype",
        "attn_implementation",
        # timings
        "ttft_ms",
        "total_ms",
        "elapsed_ms",
        "load_ms",
        "e2e_ms",
        # counts and sizes
        "input_tokens",
        "output_tokens",
        "tokens_per_sec",
        "finish_reason",
        "frames",
        "bytes",
        "num_replicas",
        "num_keys",
        "batch_size",
        "max_new_tokens",
        "queue_depth",
    }
)

# Identifiers, enum values, region names, hex key ids, model ids/paths: no spaces, bounded length.
_SAFE_STRING = re.compile(r"^[A-Za-z0-9_.:/@+\-]{0,128}$")


class UnsafeLogField(ValueError):
    """A log call tried to record a field or value that is not content-free."""


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"securechat.{name}")


def _check(fields: dict[str, object]) -> None:
    for key, value in fields.items():
        if key not in ALLOWED_FIELDS:
            raise UnsafeLogField(f"log field not allowed: {key}")
        if isinstance(value, str) and not _SAFE_STRING.fullmatch(value):
            raise UnsafeLogField(f"log value for {key} is not an identifier")
        if not isinstance(value, str | int | float | bool | None):
            raise UnsafeLogField(f"log value for {key} has type {type(value).__name__}")


def format_event(event: str, fields: dict[str, object]) -> str:
    """``event key=value ...`` with keys sorted, so lines are greppable and stable."""
    _check(fields)
    parts = [f"{key}={fields[key]}" for key in sorted(fields)]
    return " ".join([event, *parts])


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log ``event`` with allow-listed ``fields``; never pass request content here."""
    if not _SAFE_STRING.fullmatch(event):
        raise UnsafeLogField("event names are identifiers")
    if logger.isEnabledFor(level):
        logger.log(level, format_event(event, fields))
    else:
        _check(fields)
