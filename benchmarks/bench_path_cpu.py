"""CPU per request on the serving path, by process, at a steady load (``make bench-path-cpu``).

The Serve app runs on a local Ray (tiny model, batched engine, one worker, limits raised, the code's stream
settings). ``--clients`` clients each seal a request for the worker's keys, POST it to ``/infer``, open every
frame and go again, for ``--warmup-s`` and then a measured ``--window-s``. Each process's CPU time (user +
system, from ``/proc/<pid>/stat``) is read at the window's start and end and grouped by kind: Serve's proxy,
the gateway, the orchestrator, the worker replica, the engine (the worker's child process), Serve's
controller, Ray's daemons (raylet, GCS, ...), and the rest. CPU ms per request = CPU seconds over the window /
requests completed in it. "path" is proxy + gateway + orchestrator + worker replica: what relaying one request
costs the host outside the engine.

``--profile-s S`` then samples each path process with py-spy for S more seconds of the same load (after the
measured window, so the profiler's own CPU does not count) and writes each one's top frames, by own time and
by time including callees.

``--baseline-tree DIR`` first runs this same script with ``DIR`` (a checkout of older code) first on every
process's path, then the current tree, alternating ``--repeats`` times, for a before/after in the same minutes.

    python -m benchmarks.bench_path_cpu --out benchmarks/results/serving/path-cpu.json
    python -m benchmarks.bench_path_cpu --baseline-tree /tmp/landed --repeats 2 --out ...

JSON: {"benchmark", "machine", "clients", "max_new_tokens", "runs": [{"tree", "requests_per_s", "cpu_ms": {kind:
ms per request}, "path_ms", "profile": {kind: {"self": [[frame, share]], "total": [...]}}}]}; markdown beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from deployments.serve_env import without_serve_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO: Final = Path(__file__).resolve().parents[1]
PROMPT: Final = "Write a short note about rivers and the bridges across them."
PATH_KINDS: Final = ("serve proxy", "gateway", "orchestrator", "worker replica")
KINDS: Final = (*PATH_KINDS, "engine", "serve controller", "ray daemons", "other")
_TICKS: Final = os.sysconf("SC_CLK_TCK")
SPY_FORMAT: Final = ("--format", "raw", "--nonblocking")


# -- processes ---------------------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for every process this user can see."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                found[int(entry)] = (ppid, _read(f"/proc/{entry}/cmdline"))
    return found


def classify(pid: int, table: dict[int, tuple[int, str]]) -> str | None:
    """The process's kind, or None for one outside this Ray session (and this benchmark's own process)."""
    ppid, command = table[pid]
    if pid == os.getpid():
        return None
    if "ServeReplica" in command:
        if ":Gateway" in command:
            return "gateway"
        if ":Orchestrator" in command:
            return "orchestrator"
        if ":Worker-" in command:
            return "worker replica"
        return "other"
    if "ProxyActor" in command or "HAProxyManager" in command or "bin/haproxy" in command:
        return "serve proxy"  # Serve's Python proxy, or HAProxy and the actor that runs it (throughput mode)
    if "ServeController" in command:
        return "serve controller"
    if ppid in table and ":Worker-" in table[ppid][1]:
        return "engine"  # the worker replica's child: the engine process (or the parse server)
    if any(name in command for name in ("raylet", "gcs_server", "dashboard", "log_monitor", "ray/_private")):
        return "ray daemons"
    if command.startswith("ray::") or "default_worker.py" in command:
        return "other"
    return None


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return seconds


# -- load --------------------------------------------------------------------------------------------------
class Load:
    """``clients`` loops of ``bench_serving``'s client (seal, POST, open every frame); counts what completes."""

    def __init__(self, base_url: str, clients: int, max_new_tokens: int) -> None:
        from benchmarks.bench_serving import ServingClient

        self.client = ServingClient(base_url, prompt=PROMPT, max_new_tokens=max_new_tokens)
        self.clients = clients
        self.completed = 0
        self.errors = 0
        self.frames = 0  # wire frames, over every completed request
        self.stop_at = 0.0

    async def run(self, seconds: float) -> None:
        await self.client.refresh_keys()
        self.stop_at = time.monotonic() + seconds
        await asyncio.gather(*(self._loop(i) for i in range(self.clients)))

    async def _loop(self, index: int) -> None:
        while time.monotonic() < self.stop_at:
            try:
                result = await self.client.infer(index)  # raises on an error frame or a truncated stream
                self.completed += 1
                self.frames += result.wire_frames
            except Exception:  # counted and reported; a benchmark with errors is not a result
                self.errors += 1

    async def close(self) -> None:
        await self.client.close()


def app_args(max_new_tokens: int) -> dict[str, Any]:
    """``bench_serving``'s app (tiny model, batched, EOS off, limits raised) with this benchmark's answer length."""
    from benchmarks.bench_serving import MAX_BATCH_SIZE
    from benchmarks.bench_serving import app_args as serving_app_args

    engine = {"max_new_tokens": max_new_tokens, "kv_cache_tokens": MAX_BATCH_SIZE * (512 + max_new_tokens)}
    return serving_app_args(None, engine)


def measure(clients: int, max_new_tokens: int, warmup_s: float, window_s: float, profile_s: float) -> dict[str, Any]:
    from deployments.local import start_local, stop_local

    app = start_local(app_args(max_new_tokens))
    try:
        return asyncio.run(_measure(app.base_url, clients, max_new_tokens, warmup_s, window_s, profile_s))
    finally:
        stop_local()


async def _measure(
    base_url: str, clients: int, max_new_tokens: int, warmup_s: float, window_s: float, profile_s: float
) -> dict[str, Any]:
    load = Load(base_url, clients, max_new_tokens)
    driving = asyncio.ensure_future(load.run(warmup_s + window_s + profile_s + 3600))
    try:
        await asyncio.sleep(warmup_s)
        table = processes()
        kinds = {pid: kind for pid in table if (kind := classify(pid, table)) is not None}
        before, completed_before, started = cpu_seconds(list(kinds)), load.completed, time.monotonic()
        frames_before = load.frames
        await asyncio.sleep(window_s)
        after, elapsed = cpu_seconds(list(kinds)), time.monotonic() - started
        completed, frames = load.completed - completed_before, load.frames - frames_before
        cpu: dict[str, float] = collections.defaultdict(float)
        for pid, kind in kinds.items():
            if pid in before and pid in after:
                cpu[kind] += after[pid] - before[pid]
        per_request = {kind: round(1000 * cpu[kind] / max(completed, 1), 2) for kind in KINDS}
        report: dict[str, Any] = {
            "requests_per_s": round(completed / elapsed, 1),
            "completed": completed,
            "errors": load.errors,
            "window_s": round(elapsed, 1),
            "frames_per_request": round(frames / max(completed, 1), 2),
            "cpu_ms": per_request,
            "path_ms": round(sum(per_request[kind] for kind in PATH_KINDS), 2),
            "cpu_busy": round(sum(cpu.values()) / elapsed, 2),  # cores' worth of CPU the session used
        }
        print(f"  {report['requests_per_s']} req/s, path {report['path_ms']} ms/request: {per_request}", flush=True)
        if profile_s > 0:
            report["profile"] = await asyncio.to_thread(profile, kinds, profile_s)
        return report
    finally:
        load.stop_at = 0.0
        await driving
        await load.close()


# -- profile -----------------------------------------------------------------------------------------------
def profile(kinds: dict[int, str], seconds: float, top: int = 12) -> dict[str, Any]:
    """py-spy on each path process at once; each one's top frames by own samples and by samples under them."""
    table = processes()
    targets: dict[str, int] = {}
    for pid, kind in kinds.items():
        command = table.get(pid, (0, ""))[1]
        if kind in PATH_KINDS and command.startswith("ray::"):  # Python processes (not HAProxy's binary)
            label = kind if kind != "serve proxy" else f"serve proxy ({command.split()[0].removeprefix('ray::')})"
            targets[label] = pid
    spy = str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory() as directory:
        outputs = {kind: Path(directory) / f"{kind.replace(' ', '-')}.txt" for kind in targets}
        runs = [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    "200",
                    *SPY_FORMAT,
                    "--output",
                    str(outputs[kind]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for kind, pid in targets.items()
        ]
        for run in runs:
            run.wait(timeout=seconds + 60)
        return {kind: top_frames(path.read_text() if path.exists() else "", top) for kind, path in outputs.items()}


def top_frames(collapsed: str, top: int) -> dict[str, Any]:
    """From py-spy's collapsed stacks ("a;b;c count"), the share of samples each frame is on top of (self) and
    anywhere in (total); idle frames (waiting in the event loop's selector) are counted apart."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    samples = idle = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        samples += count
        if any(marker in frames[-1] for marker in ("select (selectors", "poll (selectors", "epoll", "wait (threading")):
            idle += count
            continue
        own[_short(frames[-1])] += count
        for frame in {_short(frame) for frame in frames}:
            under[frame] += count
    busy = max(samples - idle, 1)
    return {
        "samples": samples,
        "busy_share": round((samples - idle) / max(samples, 1), 3),
        "self": [[frame, round(count / busy, 3)] for frame, count in own.most_common(top)],
        "total": [[frame, round(count / busy, 3)] for frame, count in under.most_common(top * 2)],
    }


def _short(frame: str) -> str:
    """ "function (path/to/site-packages/pkg/mod.py:123)" -> "function (pkg/mod.py)"."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


# -- runs and report ---------------------------------------------------------------------------------------
def run_in_tree(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """This script, as a child process, with ``tree``'s code first on every process's path."""
    env = without_serve_settings(os.environ)  # the tree's own start_local sets them, or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, str(Path(__file__).resolve()), "--single", "--out", str(out)]
    command += ["--clients", str(args.clients), "--max-new-tokens", str(args.max_new_tokens)]
    command += ["--warmup-s", str(args.warmup_s), "--window-s", str(args.window_s), "--profile-s", str(args.profile_s)]
    subprocess.run(command, cwd=tree, env=env, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# Frames every sample of a thread sits under: they say nothing about where the time goes.
_PLUMBING: Final = ("Thread.", "<module> (", "Worker.main_loop", "_worker (concurrent", "_WorkItem.run")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# CPU per request on the serving path ({report['machine']})",
        "",
        f"{report['clients']} clients, each sealing a request, POSTing it to `/infer` and opening every frame, "
        f"then again; tiny model, batched engine, {report['max_new_tokens']} new tokens per answer (EOS off), one "
        f"worker. CPU from `/proc` over a {report['window_s']} s window after {report['warmup_s']} s of warm-up. "
        "path = Serve proxy + gateway + orchestrator + worker replica.",
        "",
        "| run | req/s | errors | " + " | ".join(KINDS) + " | **path** | cores busy |",
        "|---|---|---|" + "---|" * len(KINDS) + "---|---|",
    ]
    for run in report["runs"]:
        cells = " | ".join(f"{run['cpu_ms'][kind]:.2f}" for kind in KINDS)
        lines.append(
            f"| {run['tree']} | {run['requests_per_s']:.1f} | {run['errors']} | {cells} | **{run['path_ms']:.2f}** "
            f"| {run['cpu_busy']:.2f} |"
        )
    for run in report["runs"]:
        for kind, frames in (run.get("profile") or {}).items():
            lines += [
                "",
                f"## {run['tree']}: {kind} (py-spy, {frames['samples']} samples, busy {frames['busy_share']:.0%})",
            ]
            lines += ["", "| own time | frame |", "|---|---|"]
            lines += [f"| {share:.1%} | `{frame}` |" for frame, share in frames["self"]]
            inclusive = [(frame, share) for frame, share in frames["total"] if not frame.startswith(_PLUMBING)]
            lines += ["", "| with callees | frame |", "|---|---|"]
            lines += [f"| {share:.1%} | `{frame}` |" for frame, share in inclusive[:12]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--warmup-s", type=float, default=15)
    parser.add_argument("--window-s", type=float, default=40)
    parser.add_argument("--profile-s", type=float, default=0, help="py-spy each path process for this long after")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="a checkout of older code, run first")
    parser.add_argument("--repeats", type=int, default=1, help="with --baseline-tree: alternations of the two")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.single:
        result = measure(args.clients, args.max_new_tokens, args.warmup_s, args.window_s, args.profile_s)
        assert args.out is not None
        args.out.write_text(json.dumps(result) + "\n")
        return
    from benchmarks.experiments.common import cpu_model_name

    trees = [("before", args.baseline_tree)] if args.baseline_tree else []
    trees.append(("after" if args.baseline_tree else "current", REPO))
    runs = []
    with tempfile.TemporaryDirectory() as directory:
        for repeat in range(args.repeats):
            for name, tree in trees:
                print(f"{name} (repeat {repeat + 1}):", flush=True)
                run = run_in_tree(tree, args, Path(directory) / f"{name}-{repeat}.json")
                runs.append({"tree": name if args.repeats == 1 else f"{name} #{repeat + 1}", **run})
    report = {
        "benchmark": "path_cpu",
        "machine": f"{cpu_model_name()}, {os.cpu_count()} cores",
        "clients": args.clients,
        "max_new_tokens": args.max_new_tokens,
        "warmup_s": args.warmup_s,
        "window_s": args.window_s,
        "runs": runs,
    }
    table = markdown(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
