"""Shared fixtures. The tiny model is built once per session into a temp cache; nothing is downloaded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from deployments.serve_env import BUILDER_ENV
from tests.postgres_harness import PostgresServer

if TYPE_CHECKING:
    from securechat.rag.embedder import MiniLMEmbedder

# The decode attention kernel (Triton) runs on the CPU under Triton's interpreter in tests. Triton reads the
# setting once, when it is imported, so it is set before any test imports it; only where there is no CUDA (a
# GPU host compiles the kernel instead, and the engine never uses the interpreter there).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Serve's throughput switches, as `make serve` starts Ray with them (deployments/serve_env.py): Serve reads them
# when it is imported, so this process (which builds the apps the Ray tests start) has them before any test module
# imports it; start_local and the cluster harness give Ray's own processes the whole set.
os.environ.update(BUILDER_ENV)


@pytest.fixture(autouse=True, scope="session")
def _no_personal_trust_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A developer's own release-log key and last-seen checkpoints (under ~) never change what a test trusts."""
    state = tmp_path_factory.mktemp("client-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SECURECHAT_LOG_KEY", str(state / "log-key.pem"))
        mp.setenv("SECURECHAT_LOG_STATE", str(state / "last-seen.json"))
        for name in ("SECURECHAT_LOG_VKEY_FILE", "SECURECHAT_WITNESS_VKEY_FILES", "SECURECHAT_MIN_WITNESSES"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def securechat_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh cache root, also exported as ``SECURECHAT_CACHE_DIR`` for the whole session."""
    cache_dir = tmp_path_factory.mktemp("securechat-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SECURECHAT_CACHE_DIR", str(cache_dir))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield cache_dir


@pytest.fixture(scope="session")
def tiny_model_path(securechat_cache_dir: Path) -> Path:
    """The embedded tiny Qwen2 model, built once into the session cache."""
    from securechat.tiny_model import ensure_tiny_model

    return ensure_tiny_model(securechat_cache_dir)


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    """all-MiniLM-L6-v2 from its PyPI package, loaded once for every in-process collections test."""
    from securechat.rag.embedder import MiniLMEmbedder

    return MiniLMEmbedder()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (started here, stopped at the end; see postgres_harness)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server: what ``database.url`` gets."""
    return postgres_server.create_database()


@pytest.fixture(scope="session")
def ray_app(tiny_model_path: Path, securechat_cache_dir: Path) -> Iterator[object]:
    """The whole Serve app on a local Ray cluster (tests marked ``ray``); the tiny model is prebuilt."""
    from deployments.local import stop_local
    from tests import ray_harness

    app = ray_harness.start(securechat_cache_dir)
    try:
        yield app
    finally:
        import ray

        if ray.is_initialized():  # else the multi-node tests, which run last, stopped it to start their cluster
            stop_local()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``cluster`` start their own multi-node Ray, so they run after every other Ray test."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)
