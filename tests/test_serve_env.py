"""Serve's throughput switches: one list, printed for `env`, used by `make serve`, refused when set too late."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deployments.serve_env import BUILDER_ENV, THROUGHPUT_ENV, without_serve_settings

REPO = Path(__file__).resolve().parents[1]


def test_the_module_prints_the_switches_for_env_and_make_serve_uses_it() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "deployments.serve_env"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert dict(line.split("=", 1) for line in printed.splitlines()) == THROUGHPUT_ENV
    serve_recipe = (REPO / "Makefile").read_text().split("\nserve:", 1)[1].split("\n\n", 1)[0]
    assert "python -m deployments.serve_env" in serve_recipe and "serve run serve_config.yaml" in serve_recipe
    assert BUILDER_ENV.items() <= THROUGHPUT_ENV.items() and "RAY_SERVE_USE_GRPC_BY_DEFAULT" in BUILDER_ENV


def test_start_local_refuses_a_process_whose_serve_was_imported_without_them() -> None:
    script = "import ray.serve\nfrom deployments.local import start_local\nstart_local({})\n"
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=without_serve_settings(os.environ), capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "ray.serve was imported before deployments.serve_env.BUILDER_ENV" in run.stderr
