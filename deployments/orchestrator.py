"""Orchestrator deployment: the InferenceDispatcher over one RayWorkerPool per region."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from ray.serve.handle import DeploymentHandle

from deployments.pool import RayWorkerPool
from securechat.config import AppSettings
from securechat.dispatcher import InferenceDispatcher
from securechat.host_limits import HostLimits


class OrchestratorDeployment:
    def __init__(self, settings: dict[str, Any], workers: dict[str, DeploymentHandle]) -> None:
        app = AppSettings.model_validate(settings)
        pools = {region: RayWorkerPool(handle) for region, handle in workers.items()}
        self._dispatcher = InferenceDispatcher(pools, app.dispatch)

    async def infer(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        async with aclosing(self._dispatcher.dispatch(envelope, limits)) as frames:
            async for frame in frames:
                yield frame

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        return await self._dispatcher.key_directory(region)

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        return await self._dispatcher.attestations(region, nonce)
