"""The app the Ray tests share (one local cluster per test session), and fault injection by replica."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployments.local import LocalApp, start_local
from securechat.attestation import (
    create_release_key,
    load_release_key,
    manifest_for_registers,
    save_manifest,
    sign_manifest,
)
from securechat.attestation.app_measurement import measure_app_worker
from securechat.attestation.platforms import release_policy
from securechat.client import ClientConfig
from securechat.config import AppSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
MAIN_REGION = "us-west-1"
BATCHED_REGION = "batched-1"  # the continuous-batching engine behind the same graph
FAULT_REGION = "faults-1"  # scripted slow engine: lets tests kill a replica before or during its stream
FAULT_CHUNKS = ["one ", "two ", "three ", "four"]
FAULT_DELAY_S = 0.8
POISON_PROMPT = "poison"  # makes the scripted engine die (EngineDeadError), as a broken GPU would

APP_ARGS: dict[str, Any] = {
    "regions": [
        {"name": MAIN_REGION, "num_replicas": 2},
        {
            "name": BATCHED_REGION,
            "num_replicas": 1,
            "engine": {
                "kind": "batched",
                "dtype": "fp32",
                "device": "cpu",
                "max_new_tokens": 256,
                "max_batch_size": 8,
                "disable_eos": True,  # answers as long as asked: frame counts and sizes tests rely on it
            },
        },
        {
            "name": FAULT_REGION,
            "num_replicas": 2,
            "engine": {
                "kind": "tests.fakes:ScriptedEngine",
                "options": {"chunks": FAULT_CHUNKS, "delay_s": FAULT_DELAY_S, "die_on": POISON_PROMPT},
            },
        },
    ],
    "engine": {"kind": "hf", "model": "securechat/tiny-qwen2", "dtype": "fp32", "device": "cpu", "max_new_tokens": 32},
    "gateway": {"max_prompt_chars": 2000, "key_directory_ttl_s": 0.5},
    # The smallest frames, and a tick slow enough that a short answer is its first text plus one flush at the
    # end whatever the machine's speed: frame counts on the wire are then deterministic, and long answers are
    # cut into several frames (tests/test_stream_ray.py).
    "stream": {"flush_interval_ms": 1000, "frame_bytes": 512},
    # Collections in the batched region only (every other worker would load the embedder for nothing); the
    # store lives in the test session's cache directory.
    "rag": {"enabled": True, "regions": [BATCHED_REGION], "store_path": "${SECURECHAT_CACHE_DIR}/documents.sqlite3"},
    # The release log the gateway serves; tests create it there (the gateway opens it per request).
    "transparency": {"log_db": "${SECURECHAT_CACHE_DIR}/transparency-log.sqlite3"},
    "dispatch": {"choose_timeout_s": 20},
    "auth": {"mode": "disabled"},  # tenant auth is tested in-process (test_gateway_auth.py)
    # Byte-exact SEV-SNP reports from an emulated AMD-SP: the production verifier checks every document.
    "attestation": {"platform": "emulated-sev-snp", "emulator_dir": "${SECURECHAT_CACHE_DIR}/snp-emulator"},
}


def platform_root_path(cache_dir: Path) -> Path:
    """The simulated platform root the test cluster's workers create on first start (never the user's own)."""
    return cache_dir / "platform-root.pem"


def emulator_ark_path(cache_dir: Path) -> Path:
    """The ARK of the emulated SEV-SNP platform the test app's workers make on first start: what clients pin."""
    return cache_dir / "snp-emulator" / "ark.der"


def pinned_client_config(
    directory: Path,
    *,
    args: dict[str, Any],
    region: str,
    release: str,
    base_url: str,
    root_public_key_path: Path,
    tenant_id: str = "tenant1",
    api_key: str | None = None,
    snp_ark_path: Path | None = None,
) -> ClientConfig:
    """What a user pins for a running app: its platform root, a release key, and a manifest signed by that key
    for exactly what ``region``'s workers run (measured from the app's ``args``), all written under ``directory``.
    """
    release_key = directory / "release.pem"
    if not release_key.exists():
        create_release_key(release_key)
    settings = AppSettings.model_validate(args)
    registers = measure_app_worker(settings, region)
    manifest_path = directory / f"manifest-{region}-{release}.json"
    platforms = release_policy(settings.attestation.platform, registers)
    manifest = manifest_for_registers(
        "securechat", release, registers, suites=settings.sealing.suites, platforms=platforms
    )
    save_manifest(manifest_path, sign_manifest(manifest, load_release_key(release_key)))
    return ClientConfig(
        tenant_id=tenant_id,
        base_url=base_url,
        region=region,
        api_key=api_key,
        root_public_key_path=root_public_key_path,
        release_public_key_path=Path(f"{release_key}.pub"),
        manifest_path=manifest_path,
        snp_ark_paths=(snp_ark_path,) if snp_ark_path is not None else (),
    )


def start(cache_dir: Path) -> LocalApp:
    env = {"SECURECHAT_CACHE_DIR": str(cache_dir), "SECURECHAT_PLATFORM_ROOT": str(platform_root_path(cache_dir))}
    return start_local(APP_ARGS, env=env, extra_pythonpath=str(REPO_ROOT))


def with_region_replicas(region: str, num_replicas: int) -> dict[str, Any]:
    regions = [{**r, "num_replicas": num_replicas} if r["name"] == region else r for r in APP_ARGS["regions"]]
    return {**APP_ARGS, "regions": regions}


def kill_actor(name_suffix: str) -> None:
    """Kill the Serve actor whose name ends with ``name_suffix``, as a crash would."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::") and actor["name"].endswith(name_suffix):
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            return
    raise LookupError("no such replica actor")


def kill_worker(worker_id: str) -> None:
    """Kill the replica behind ``worker_id`` (``<region>-<replica unique id>``)."""
    kill_actor("#" + worker_id.rsplit("-", 1)[1])


def kill_orchestrator() -> None:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Orchestrator#" in a["name"]]
    for name in names:
        kill_actor(name.rsplit("#", 1)[1])
