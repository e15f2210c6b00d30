"""Gateway deployment: the FastAPI ingress, talking to the orchestrator through Ray handles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from deployments.metrics import GatewayMetrics
from deployments.store import HandleDocumentStore
from securechat.config import AppSettings
from securechat.gateway.app import create_app
from securechat.gateway.service import GatewayService
from securechat.host_limits import HostLimits
from securechat.tenants.tenancy import build_tenancy


class HandleBackend:
    """OrchestratorBackend over a DeploymentHandle (ciphertext only crosses it)."""

    def __init__(self, orchestrator: DeploymentHandle) -> None:
        self._infer = orchestrator.options(method_name="infer", stream=True)
        self._directory = orchestrator.options(method_name="key_directory")
        self._attestations = orchestrator.options(method_name="attestations")

    async def infer(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        stream = self._infer.remote(envelope, limits)
        assert isinstance(stream, DeploymentResponseGenerator)
        try:
            async for frame in stream:
                yield frame
        finally:
            stream.cancel()  # a client that went away frees its worker slot

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        directory: list[dict[str, Any]] = await self._directory.remote(region)
        return directory

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        documents: list[dict[str, Any]] = await self._attestations.remote(region, nonce)
        return documents


@serve.ingress()
class GatewayDeployment:
    def __init__(
        self, settings: dict[str, Any], orchestrator: DeploymentHandle, store: DeploymentHandle | None = None
    ) -> None:
        app_settings = AppSettings.model_validate(settings)
        # Fails the replica's start with DatabaseUnavailable (and its reason) when the database is down.
        self._tenancy = build_tenancy(app_settings.auth, app_settings.tenants, app_settings.database)
        documents = HandleDocumentStore(store) if store is not None else None
        self._service = GatewayService(
            app_settings, HandleBackend(orchestrator), self._tenancy, GatewayMetrics(), documents
        )

    def __del__(self) -> None:
        tenancy = getattr(self, "_tenancy", None)
        if tenancy is not None:
            tenancy.close()

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this after __init__: the app is built in the replica, with this replica's service."""
        app = create_app()
        app.state.service = self._service
        return app
