"""What the gateway needs from the orchestrator, and an in-process implementation for tests and tools."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from securechat.dispatcher import InferenceDispatcher
from securechat.host_limits import HostLimits


class OrchestratorBackend(Protocol):
    def infer(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        """Length-prefixed wire frames; closing the iterator cancels the request downstream. ``limits`` are the
        tenant's, which the worker enforces whatever the sealed body asks for."""
        ...

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        """Public identities (worker id, state, keys) of the region's live workers."""
        ...

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        """Each live worker's identity plus its attestation document answering ``nonce``."""
        ...


class LocalBackend:
    """The dispatcher called in-process (no Ray)."""

    def __init__(self, dispatcher: InferenceDispatcher) -> None:
        self._dispatcher = dispatcher

    def infer(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        return self._dispatcher.dispatch(envelope, limits)

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        return await self._dispatcher.key_directory(region)

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        return await self._dispatcher.attestations(region, nonce)
