"""serve_config.yaml and every profile in configs/ are valid Serve configs whose args our settings accept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from deployments.app import build_app, worker_deployment_name
from deployments.store import STORE_DEPLOYMENT
from securechat.config import AppSettings

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "configs").glob("*.yaml"))
GPU_PROFILES = [p for p in PROFILES if p.name.startswith("gpu-")]


def load(path: Path) -> tuple[ServeDeploySchema, dict[str, Any]]:
    raw = yaml.safe_load(path.read_text())
    return ServeDeploySchema.model_validate(raw), raw["applications"][0]


@pytest.mark.parametrize("path", [ROOT / "serve_config.yaml", *PROFILES], ids=lambda p: p.name)
def test_config_is_valid_and_names_real_deployments(path: Path) -> None:
    _, app = load(path)
    assert app["import_path"] == "deployments.app:build_app"
    settings = AppSettings.model_validate(app["args"])
    expected = {"Gateway", "Orchestrator", *(worker_deployment_name(r) for r in settings.region_names)}
    if settings.rag.enabled:
        expected.add(STORE_DEPLOYMENT)
    assert {d["name"] for d in app["deployments"]} <= expected
    built = build_app(app["args"])  # the graph builds without a running cluster
    assert built is not None
    for deployment in app["deployments"]:
        if deployment["name"].startswith("Worker-"):
            engine = settings.engine_for(deployment["name"].removeprefix("Worker-"))
            # Serve's slot limit must let the engine fill its batch and leave room for control broadcasts.
            assert deployment["max_ongoing_requests"] >= engine.max_concurrent_requests + 4


@pytest.mark.parametrize("path", [ROOT / "serve_config.yaml", ROOT / "configs" / "cpu-hf.yaml"], ids=lambda p: p.name)
def test_cpu_profiles_run_with_the_embedded_model(path: Path) -> None:
    _, app = load(path)
    settings = AppSettings.model_validate(app["args"])
    assert settings.engine.model == "securechat/tiny-qwen2" and settings.engine.device == "cpu"
    assert settings.attestation.platform == "simulated"  # no CPU profile claims hardware protection
    assert app["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"
    total_cpus = sum(d["num_replicas"] * d["ray_actor_options"]["num_cpus"] for d in app["deployments"])
    assert total_cpus <= 2  # fits a 2-core machine
    assert all(d["ray_actor_options"].get("num_gpus", 0) == 0 for d in app["deployments"])


@pytest.mark.parametrize("path", GPU_PROFILES, ids=lambda p: p.name)
def test_gpu_profiles_pin_workers_to_gpus(path: Path) -> None:
    _, app = load(path)
    settings = AppSettings.model_validate(app["args"])
    assert settings.engine.model == "Qwen/Qwen2.5-1.5B-Instruct" and settings.engine.device == "cuda"
    assert settings.auth.mode.value == "required"  # production profiles check tenant API keys
    workers = [d for d in app["deployments"] if d["name"].startswith("Worker-")]
    assert workers and all(d["ray_actor_options"]["num_gpus"] > 0 for d in workers)
    gpus = sum(d["num_replicas"] * d["ray_actor_options"]["num_gpus"] for d in workers)
    assert gpus == 1  # each profile fits one GPU


def test_gpu_profiles_cover_the_prototype_variants() -> None:
    engines = [AppSettings.model_validate(load(p)[1]["args"]).engine for p in GPU_PROFILES]
    assert {e.kind for e in engines} == {"hf", "batched"}
    assert {e.attn_implementation for e in engines} >= {"sdpa", "flash_attention_2"}
    assert {e.quantization for e in engines} == {"none", "int8"}
    assert {e.dtype for e in engines} >= {"fp16", "bf16"}


@pytest.mark.parametrize("path", [ROOT / "serve_config.yaml", *PROFILES], ids=lambda p: p.name)
def test_every_shipped_profile_seals_post_quantum_only(path: Path) -> None:
    """Classical suites are a compatibility setting an operator turns on, never a shipped default."""
    suites = AppSettings.model_validate(load(path)[1]["args"]).sealing.suites
    assert suites and all(suite.post_quantum for suite in suites)


@pytest.mark.parametrize(
    ("sealing", "names"),
    [
        ({"suites": []}, "non-empty"),
        ({"suites": ["hpke-x25519-hkdf-sha256-aes256gcm"] * 2}, "unique"),
        ({"suites": ["rsa2048"]}, "suites"),
    ],
)
def test_bad_sealing_settings_stop_the_app_at_start_with_a_clear_error(sealing: dict[str, Any], names: str) -> None:
    _, app = load(ROOT / "serve_config.yaml")
    with pytest.raises(ValidationError) as refused:
        build_app({**app["args"], "sealing": sealing})
    assert names in str(refused.value) and "sealing" in str(refused.value)


def test_the_default_profile_runs_the_batched_engine() -> None:
    _, app = load(ROOT / "serve_config.yaml")
    assert AppSettings.model_validate(app["args"]).engine.kind == "batched"


@pytest.mark.parametrize(
    ("stream", "names"),
    [
        ({"flush_interval_ms": 0}, "flush_interval_ms"),
        ({"flush_interval_ms": -5}, "flush_interval_ms"),
        ({"frame_bytes": 100}, "the final frame's metrics must fit"),
        ({"frame_bytes": 1 << 20}, "16 bits"),
        ({"constant_rate": "sometimes"}, "constant_rate"),
        ({"frame_size": 1024}, "frame_size"),  # a misspelt setting is refused, not ignored
    ],
)
def test_bad_stream_settings_stop_the_app_at_start_with_a_clear_error(stream: dict[str, Any], names: str) -> None:
    _, app = load(ROOT / "serve_config.yaml")
    with pytest.raises(ValidationError) as refused:
        build_app({**app["args"], "stream": stream})
    assert names in str(refused.value) and "stream" in str(refused.value)


def test_a_body_limit_too_small_for_one_document_stops_the_app_at_start() -> None:
    _, app = load(ROOT / "serve_config.yaml")
    args = {**app["args"], "rag": {**app["args"]["rag"], "max_document_bytes": 8 << 20}}
    with pytest.raises(ValidationError) as refused:
        build_app(args)  # the default 4 MiB body cannot carry an 8 MiB document, sealed
    assert "gateway.max_envelope_bytes must fit one document" in str(refused.value)
    build_app({**args, "gateway": {"max_envelope_bytes": 16 << 20}})
