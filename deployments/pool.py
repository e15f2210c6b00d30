"""A region's Worker deployment as a ``WorkerPool``: Serve's choose_replica / dispatch / broadcast."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from securechat.dispatcher import Overloaded, Selection, WorkerLost, WorkerPool
from securechat.host_limits import HostLimits

_LOST = (RayActorError, ActorDiedError, ActorUnavailableError, ReplicaUnavailableError)
# Broadcasts wait for a free slot on each replica (max_ongoing_requests), so a saturated replica may not
# answer quickly; its identity never changes while it lives, so the last answer stands in for it.
DESCRIBE_TIMEOUT_S = 2.0


class RayWorkerPool(WorkerPool):
    def __init__(self, handle: DeploymentHandle) -> None:
        self._run = handle.options(method_name="run", stream=True)
        self._handle = handle
        self._last_described: list[dict[str, Any]] = []

    @contextlib.asynccontextmanager
    async def choose(self) -> AsyncIterator[Selection]:
        try:
            chooser = self._run.choose_replica()
            async with chooser as selection:
                metadata = selection.replica_metadata
                yield Selection(
                    replica_id=str(selection.replica_id),
                    worker_id=str(metadata.get("worker_id", "")),
                    key_ids=frozenset(key["key_id"] for key in metadata.get("keys", [])),
                    handle=selection,
                )
        except BackPressureError:
            raise Overloaded() from None

    async def dispatch(self, selection: Selection, envelope: bytes, limits: HostLimits) -> AsyncGenerator[bytes, None]:
        stream = self._run.dispatch(selection.handle, envelope, limits)
        assert isinstance(stream, DeploymentResponseGenerator)
        try:
            async for frame in stream:
                yield frame
        except _LOST:
            raise WorkerLost() from None
        finally:
            stream.cancel()

    async def attest(self, nonce: str) -> list[dict[str, Any]]:
        """Every live replica's document for ``nonce``; a replica that cannot answer in time is left out."""
        try:
            results = await self._handle.broadcast("attest", nonce).results_async(
                timeout_s=DESCRIBE_TIMEOUT_S, return_exceptions=True
            )
        except (TimeoutError, DeploymentUnavailableError):
            return []
        return sorted((r for r in results if isinstance(r, dict)), key=lambda r: r["worker_id"])

    async def describe(self, *, allow_stale: bool = True) -> list[dict[str, Any]]:
        try:
            results = await self._handle.broadcast("describe").results_async(
                timeout_s=DESCRIBE_TIMEOUT_S, return_exceptions=True
            )
        except TimeoutError:
            return self._last_described if allow_stale else []
        except DeploymentUnavailableError:
            results = []
        self._last_described = sorted((r for r in results if isinstance(r, dict)), key=lambda r: r["worker_id"])
        return self._last_described
