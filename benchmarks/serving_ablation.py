"""What each serving-path choice is worth: ``bench_serving`` variants run interleaved, several times, medians.

This machine's speed drifts by tens of percent from minute to minute, so variants measured one after another
compare the minutes, not the variants. Here every repeat runs each variant once, in turn (A B C A B C ...), each
in a fresh process with its own Ray, and the table reports each variant's median and range over the repeats,
with the engine-alone figure of the same runs beside it.

    python -m benchmarks.serving_ablation --repeats 3 --out-dir benchmarks/results/serving/ablation
    python -m benchmarks.serving_ablation --baseline-tree /tmp/landed   # adds a checkout of older code

``--baseline-tree DIR`` adds the variant "baseline": ``DIR``'s own ``benchmarks.bench_serving`` run with ``DIR``
first on the path of every process (the Ray workers inherit it), for a before/after measured in the same minutes.
Output: one JSON per run (``<variant>-<repeat>.json``), ``summary.json`` and ``summary.md``; the table is
printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import percentile
from deployments.serve_env import without_serve_settings

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    tree: Path = REPO


# Serve's throughput switches are part of every variant of this tree (deployments/serve_env.py, set by start_local).
VARIANTS = (
    Variant("default"),
    Variant("engine core in a thread", ("--engine", '{"core": "thread"}')),
    Variant("two torch threads", ("--engine", '{"torch_threads": 2}')),
    Variant("flush every 100 ms", ("--stream", '{"flush_interval_ms": 100}')),
    Variant("no constant rate", ("--stream", '{"constant_rate": false}')),
)


def run_variant(variant: Variant, levels: str, rounds: int, out: Path) -> dict[str, Any]:
    env = {**os.environ, **variant.env}
    if variant.tree != REPO:  # the older code as it ran: with Serve's switches only where that tree sets them
        env = without_serve_settings(env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(variant.tree), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "benchmarks.bench_serving", "--levels", levels, "--rounds", str(rounds)]
    command += [*variant.args, "--out", str(out)]
    subprocess.run(command, cwd=variant.tree, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def summarise(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, reports in runs.items():
        for streams in [level["streams"] for level in reports[0]["levels"]]:
            e2e = [_level(r, streams)["e2e"]["tokens_per_s"] for r in reports]
            engine = [_level(r, streams)["engine"]["tokens_per_s"] for r in reports]
            ttft = [_level(r, streams)["e2e"]["ttft_ms_p50"] for r in reports]
            rows.append(
                {
                    "variant": name,
                    "streams": streams,
                    "e2e_tokens_per_s_median": round(percentile(e2e, 50), 1),
                    "e2e_tokens_per_s_range": [min(e2e), max(e2e)],
                    "engine_tokens_per_s_median": round(percentile(engine, 50), 1),
                    "ratio_median": round(percentile([a / b for a, b in zip(e2e, engine, strict=True)], 50), 3),
                    "e2e_ttft_ms_p50_median": round(percentile(ttft, 50), 1),
                    "repeats": len(reports),
                }
            )
    return rows


def _level(report: dict[str, Any], streams: int) -> dict[str, Any]:
    level: dict[str, Any] = next(level for level in report["levels"] if level["streams"] == streams)
    return level


def markdown(rows: list[dict[str, Any]], machine: str) -> str:
    lines = [
        f"# Serving path ablation ({machine})",
        "",
        "Each variant run once per repeat, interleaved; medians over the repeats (range in brackets).",
        "",
        "| variant | streams | end to end tok/s | engine alone tok/s | ratio | e2e TTFT p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["e2e_tokens_per_s_range"]
        lines.append(
            f"| {row['variant']} | {row['streams']} | {row['e2e_tokens_per_s_median']:,.0f} "
            f"[{low:,.0f}-{high:,.0f}] | {row['engine_tokens_per_s_median']:,.0f} | {row['ratio_median']:.2f} "
            f"| {row['e2e_ttft_ms_p50_median']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=3, help="bench_serving rounds per level in each run")
    parser.add_argument("--only", default=None, help="comma-separated variant names to run (default: all)")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="a checkout of older code to compare")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results" / "serving" / "ablation")
    args = parser.parse_args(argv)
    variants = [v for v in VARIANTS if args.only is None or v.name in args.only.split(",")]
    if args.baseline_tree is not None:
        variants.insert(0, Variant("baseline", tree=args.baseline_tree.resolve()))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    for repeat in range(args.repeats):
        for variant in variants:
            out = args.out_dir / f"{variant.name.replace(' ', '-').replace(chr(39), '')}-{repeat}.json"
            print(f"repeat {repeat + 1}/{args.repeats}: {variant.name}", flush=True)
            runs[variant.name].append(run_variant(variant, args.levels, args.rounds, out))
    rows = summarise(runs)
    machine = next(iter(runs.values()))[0]["machine"]
    table = markdown(rows, machine)
    (args.out_dir / "summary.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    (args.out_dir / "summary.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
