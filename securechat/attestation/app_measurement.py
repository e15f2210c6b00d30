"""The registers of a worker of one region of an app: what workers report and manifests allow, in one place."""

from __future__ import annotations

from securechat.attestation.measurement import measure_for_engine
from securechat.config import AppSettings


def measure_app_worker(settings: AppSettings, region: str) -> dict[str, str]:
    """Every register a worker of ``region`` measures (``deployments/worker.py``, ``securechat manifest build``)."""
    embedder_dir = None
    serves_collections = settings.serves_collections(region)
    if serves_collections:
        from securechat.rag.embedder import minilm_model_dir

        embedder_dir = minilm_model_dir()
    return measure_for_engine(
        settings.engine_for(region).model_dump(mode="json"),
        debug=settings.attestation.debug,
        stream=settings.stream.model_dump(mode="json"),
        sealing=settings.sealing.model_dump(mode="json"),
        rag=settings.rag.model_dump(mode="json") if serves_collections else None,
        embedder_dir=embedder_dir,
    )
