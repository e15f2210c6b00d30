"""benchmarks.bench_path_cpu: which process is which, py-spy's stacks into top frames, and one short real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_path_cpu import KINDS, PATH_KINDS, classify, main, markdown, top_frames

GATEWAY, ORCHESTRATOR, WORKER, ENGINE, PROXY, CONTROLLER, RAYLET, STRANGER = range(101, 109)
TABLE = {
    GATEWAY: (1, "ray::ServeReplica:securechat:Gateway"),
    ORCHESTRATOR: (1, "ray::ServeReplica:securechat:Orchestrator"),
    WORKER: (1, "ray::ServeReplica:securechat:Worker-us-west-1"),
    ENGINE: (WORKER, "/usr/bin/python3 -m securechat.engine.batched.engine_process 7"),
    PROXY: (1, "ray::ProxyActor"),
    CONTROLLER: (1, "ray::ServeController"),
    RAYLET: (1, "/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --node-ip-address=1"),
    STRANGER: (1, "/usr/sbin/sshd -D"),
}


def test_processes_are_grouped_by_their_part_of_the_path() -> None:
    kinds = {pid: classify(pid, TABLE) for pid in TABLE}
    assert kinds == {
        GATEWAY: "gateway",
        ORCHESTRATOR: "orchestrator",
        WORKER: "worker replica",
        ENGINE: "engine",
        PROXY: "serve proxy",
        CONTROLLER: "serve controller",
        RAYLET: "ray daemons",
        STRANGER: None,
    }


def test_top_frames_leave_idle_samples_out_and_count_callers() -> None:
    collapsed = "\n".join(
        [
            "main (app.py:1);handle (app.py:5);seal (crypto.py:9) 6",
            "main (app.py:1);handle (app.py:5) 2",
            "main (app.py:1);run_forever (asyncio/base_events.py:3);select (selectors.py:4) 12",
        ]
    )
    frames = top_frames(collapsed, top=5)
    assert frames["samples"] == 20 and frames["busy_share"] == 0.4
    assert frames["self"] == [["seal (crypto.py)", 0.75], ["handle (app.py)", 0.25]]
    assert dict(frames["total"]) == {"main (app.py)": 1.0, "handle (app.py)": 1.0, "seal (crypto.py)": 0.75}


@pytest.mark.ray
def test_a_short_run_reports_every_kind_and_profiles_the_path(tiny_model_path: Path, tmp_path: Path) -> None:
    """The whole benchmark, briefly: the app started in a child process, loaded, measured and sampled."""
    out = tmp_path / "path-cpu.json"
    quick = ["--clients", "2", "--max-new-tokens", "8", "--warmup-s", "2", "--window-s", "4", "--profile-s", "2"]
    main([*quick, "--out", str(out)])
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["tree"] == "current" and run["errors"] == 0 and run["requests_per_s"] > 0
    assert set(run["cpu_ms"]) == set(KINDS) and all(run["cpu_ms"][kind] > 0 for kind in PATH_KINDS)
    assert run["path_ms"] == pytest.approx(sum(run["cpu_ms"][kind] for kind in PATH_KINDS), abs=0.05)
    assert run["frames_per_request"] >= 3  # start + text, ..., final
    profiled = run["profile"]
    assert {"gateway", "orchestrator", "worker replica"} <= set(profiled)
    assert all(frames["samples"] > 0 and frames["self"] for frames in profiled.values())
    table = out.with_suffix(".md").read_text()
    assert table == markdown(report) and "| current |" in table
