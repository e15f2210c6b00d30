"""Worker deployment: one replica = one simulated enclave (own keys, own model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.metrics import WorkerMetrics
from deployments.store import HandleDocumentStore
from securechat.attestation import Attester
from securechat.attestation.app_measurement import measure_app_worker
from securechat.attestation.platforms import evidence_source, resolved_platform
from securechat.config import AppSettings, RagSettings
from securechat.engine.factory import build_engine
from securechat.envelope import Envelope
from securechat.host_limits import HostLimits
from securechat.keys import WorkerKeys
from securechat.rag.documents.sandbox import ParseBudget
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.modes import CollectionModes
from securechat.rag.service import RagOptions, RagService
from securechat.replay import ReplayGuard
from securechat.worker import EnclaveWorker, WorkerIdentity


async def build_collection_modes(settings: RagSettings, store: DeploymentHandle | None) -> CollectionModes | None:
    """The collection modes, when enabled: the embedder loads here, off the event loop."""
    if not settings.enabled or store is None:
        return None
    embedder = await asyncio.to_thread(MiniLMEmbedder)
    options = RagOptions(
        max_document_bytes=settings.max_document_bytes,
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.overlap_tokens,
        cache_bytes=settings.cache_bytes,
        cache_idle_s=settings.cache_idle_s,
        retrieval=settings.retrieval,
        parse_budget=ParseBudget(settings.parse_time_s, settings.parse_memory_mb << 20),
    )
    return CollectionModes(RagService(embedder, HandleDocumentStore(store), options))


def make_attester(identity: WorkerIdentity, app: AppSettings) -> Attester:
    """Measure this worker (code, runtime config, model files) and set up its platform's evidence."""
    registers = measure_app_worker(app, identity.region)
    source = evidence_source(app.attestation, identity.worker_id, registers)
    return Attester(source, identity, registers, key_ttl_s=app.attestation.key_ttl_s)


class WorkerDeployment:
    # Serve awaits an async constructor: the replica is not routable until the model has loaded.
    async def __init__(  # type: ignore[misc]
        self, settings: dict[str, Any], region: str, store: DeploymentHandle | None = None
    ) -> None:
        app = AppSettings.model_validate(settings)
        engine_settings = app.engine_for(region)
        replica_id = serve.get_replica_context().replica_id.unique_id
        worker_id = f"{region}-{replica_id}"
        self._worker = EnclaveWorker(
            worker_id=worker_id,
            region=region,
            platform=resolved_platform(app.attestation),
            engine=build_engine(engine_settings),
            max_new_tokens=engine_settings.max_new_tokens,
            keys=WorkerKeys.generate(app.sealing.suites),
            observer=WorkerMetrics(worker_id, region),
            attester_factory=lambda identity: make_attester(identity, app),
            stream=app.stream,
            collections=await build_collection_modes(app.rag, store) if app.serves_collections(region) else None,
            replay=ReplayGuard(app.sealing.envelope_max_ttl_s, app.sealing.replay_cache_entries),
        )
        await self._worker.start()

    def record_replica_metadata(self) -> dict[str, Any]:
        """Published to routers once: what the orchestrator checks envelopes against."""
        return self._worker.identity.to_dict()

    async def describe(self) -> dict[str, Any]:
        return {**self._worker.identity.to_dict(), "state": self._worker.state.value}

    async def attest(self, nonce: str) -> dict[str, Any]:
        return {**await self.describe(), "attestation": self._worker.attest(nonce)}

    async def run(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        async with aclosing(self._worker.run(Envelope.from_bytes(envelope), limits)) as frames:
            async for frame in frames:
                yield frame

    async def check_health(self) -> None:
        self._worker.check_health()

    async def __del__(self) -> None:
        worker = getattr(self, "_worker", None)  # absent when __init__ failed
        if worker is not None:
            await worker.close()
