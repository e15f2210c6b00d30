"""Worker deployment: one replica = one simulated enclave (own keys, own model)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments.metrics import WorkerMetrics
from securechat.config import AppSettings
from securechat.engine.factory import build_engine
from securechat.envelope import Envelope
from securechat.worker import EnclaveWorker


class WorkerDeployment:
    # Serve awaits an async constructor: the replica is not routable until the model has loaded.
    async def __init__(self, settings: dict[str, Any], region: str) -> None:  # type: ignore[misc]
        app = AppSettings.model_validate(settings)
        replica_id = serve.get_replica_context().replica_id.unique_id
        worker_id = f"{region}-{replica_id}"
        self._worker = EnclaveWorker(
            worker_id=worker_id,
            region=region,
            engine=build_engine(app.engine_for(region)),
            max_new_tokens=app.engine_for(region).max_new_tokens,
            observer=WorkerMetrics(worker_id, region),
        )
        await self._worker.start()

    def record_replica_metadata(self) -> dict[str, Any]:
        """Published to routers once: what the orchestrator checks envelopes against."""
        return self._worker.identity.to_dict()

    async def describe(self) -> dict[str, Any]:
        return {**self._worker.identity.to_dict(), "state": self._worker.state.value}

    async def run(self, envelope: bytes) -> AsyncIterator[bytes]:
        async for frame in self._worker.run(Envelope.from_bytes(envelope)):
            yield frame

    async def check_health(self) -> None:
        self._worker.check_health()

    async def __del__(self) -> None:
        worker = getattr(self, "_worker", None)  # absent when __init__ failed
        if worker is not None:
            await worker.close()
