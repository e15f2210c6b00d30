"""Worker deployment: one replica = one simulated enclave (own keys, own model)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from ray import serve

from deployments.metrics import WorkerMetrics
from securechat.attestation import Attester, ensure_root, measure_for_engine
from securechat.config import AppSettings, AttestationSettings, EngineSettings, StreamSettings
from securechat.engine.factory import build_engine
from securechat.envelope import Envelope
from securechat.worker import EnclaveWorker, WorkerIdentity


def make_attester(
    identity: WorkerIdentity, engine: EngineSettings, stream: StreamSettings, settings: AttestationSettings
) -> Attester:
    """Measure this worker (code, runtime config, model files) and have the platform root endorse it."""
    registers = measure_for_engine(
        engine.model_dump(mode="json"), debug=settings.debug, stream=stream.model_dump(mode="json")
    )
    root = ensure_root(Path(settings.root_key_path) if settings.root_key_path else None)
    return Attester(root, identity, registers, key_ttl_s=settings.key_ttl_s, debug=settings.debug)


class WorkerDeployment:
    # Serve awaits an async constructor: the replica is not routable until the model has loaded.
    async def __init__(self, settings: dict[str, Any], region: str) -> None:  # type: ignore[misc]
        app = AppSettings.model_validate(settings)
        engine_settings = app.engine_for(region)
        replica_id = serve.get_replica_context().replica_id.unique_id
        worker_id = f"{region}-{replica_id}"
        self._worker = EnclaveWorker(
            worker_id=worker_id,
            region=region,
            engine=build_engine(engine_settings),
            max_new_tokens=engine_settings.max_new_tokens,
            observer=WorkerMetrics(worker_id, region),
            attester_factory=lambda identity: make_attester(identity, engine_settings, app.stream, app.attestation),
            stream=app.stream,
        )
        await self._worker.start()

    def record_replica_metadata(self) -> dict[str, Any]:
        """Published to routers once: what the orchestrator checks envelopes against."""
        return self._worker.identity.to_dict()

    async def describe(self) -> dict[str, Any]:
        return {**self._worker.identity.to_dict(), "state": self._worker.state.value}

    async def attest(self, nonce: str) -> dict[str, Any]:
        return {**await self.describe(), "attestation": self._worker.attest(nonce)}

    async def run(self, envelope: bytes, max_new_tokens: int | None = None) -> AsyncIterator[bytes]:
        async with aclosing(self._worker.run(Envelope.from_bytes(envelope), max_new_tokens)) as frames:
            async for frame in frames:
                yield frame

    async def check_health(self) -> None:
        self._worker.check_health()

    async def __del__(self) -> None:
        worker = getattr(self, "_worker", None)  # absent when __init__ failed
        if worker is not None:
            await worker.close()
