"""The numbers the host sets for one request: content-free, passed to the worker, enforced there."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HostLimits:
    """The tenant's policy as it applies inside the worker, whatever the sealed body asks for."""

    max_new_tokens: int | None = None  # caps the answer below the worker's own limit
    max_documents: int | None = None  # the tenant's document limit, for an ingest (all its collections)
    max_chunks: int | None = None  # the tenant's chunk limit, likewise
