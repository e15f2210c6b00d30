"""The application builder: ``serve run serve_config.yaml`` calls ``build_app`` with the config's ``args``.

Deployment names are stable so serve_config.yaml's ``deployments:`` section can set ``num_replicas`` and
``ray_actor_options`` per deployment: ``Gateway``, ``Orchestrator``, one ``Worker-<region>`` per region, and
``DocumentStore`` when collections are enabled (``rag.enabled``: one replica by default, which must be the only
one on an SQLite file; with ``database.url`` a config may give it more).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from deployments.gateway import GatewayDeployment
from deployments.orchestrator import OrchestratorDeployment
from deployments.store import STORE_DEPLOYMENT, DocumentStoreDeployment
from deployments.worker import WorkerDeployment
from securechat.config import AppSettings

# CPU-friendly defaults; serve_config.yaml and configs/*.yaml override them per deployment.
_LIGHT = {"num_cpus": 0.1}


def worker_deployment_name(region: str) -> str:
    return f"Worker-{region}"


def worker_max_ongoing_requests(engine_concurrency: int) -> int:
    """Serve's per-replica limit: the engine's concurrency plus headroom, so a few requests wait inside the
    worker and control calls (describe/attest broadcasts, which also need a slot) get through while it is busy."""
    return max(8, engine_concurrency + 4)


def build_app(args: dict[str, Any]) -> Application:
    settings = AppSettings.model_validate(args)
    # Replica counts stay out of the deployments' init args, so scaling one region is a config-only update that
    # Serve applies in place instead of restarting every deployment with new arguments.
    plain = settings.model_dump(mode="json", exclude={"regions": {"__all__": {"num_replicas"}}})
    store = None
    if settings.rag.enabled:  # one replica by default: on SQLite it owns the store's file
        store = serve.deployment(
            name=STORE_DEPLOYMENT, num_replicas=1, ray_actor_options=_LIGHT, max_ongoing_requests=1000
        )(DocumentStoreDeployment).bind(plain)
    workers = {
        region.name: serve.deployment(
            name=worker_deployment_name(region.name),
            num_replicas=region.num_replicas,
            ray_actor_options={"num_cpus": 0.25},
            max_ongoing_requests=worker_max_ongoing_requests(settings.engine_for(region.name).max_concurrent_requests),
            max_queued_requests=settings.dispatch.worker_max_queued_requests,
            graceful_shutdown_timeout_s=settings.dispatch.drain_timeout_s,
            health_check_period_s=5,
        )(WorkerDeployment).bind(plain, region.name, store)
        for region in settings.regions
    }
    orchestrator = serve.deployment(name="Orchestrator", ray_actor_options=_LIGHT, max_ongoing_requests=1000)(
        OrchestratorDeployment
    ).bind(plain, workers)
    return serve.deployment(name="Gateway", ray_actor_options=_LIGHT, max_ongoing_requests=1000)(
        GatewayDeployment
    ).bind(plain, orchestrator, store)
