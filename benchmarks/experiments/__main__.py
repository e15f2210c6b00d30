"""``python -m benchmarks.experiments <name|all> [--profile cpu|gpu] [--smoke] [--out-dir DIR] ...``

Writes ``<out-dir>/<card>-<YYYY-MM-DD>/<name>.{json,md,png}`` and ``SUMMARY.md``; prints one summary table last.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from benchmarks.experiments import EXPERIMENTS
from benchmarks.experiments import app as bench_app
from benchmarks.experiments.common import ENGINES, ExperimentResult
from benchmarks.experiments.profiles import make_context
from benchmarks.experiments.random_model import write_random_model
from benchmarks.experiments.summary import render

DEFAULT_RANDOM_DIR = Path.home() / ".cache" / "securechat" / "models" / "qwen2.5-1.5b-random-v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments", description=__doc__)
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every experiment in well under a minute")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: hf,batched")
    parser.add_argument("--model", default=None, help="override the profile's model (hub id or local dir)")
    parser.add_argument("--random-weights", action="store_true", help="gpu: Qwen2.5-1.5B shape, random weights")
    parser.add_argument("--random-model-dir", type=Path, default=DEFAULT_RANDOM_DIR)
    parser.add_argument("--streams", type=int, default=None, help="overhead: N concurrent streams (gpu 64, cpu 8)")
    args = parser.parse_args(argv)
    engines = tuple(e for e in args.engines.split(",") if e)
    if not engines or any(e not in ENGINES for e in engines):
        parser.error(f"--engines takes a comma-separated subset of {ENGINES}")
    if args.random_weights and args.profile != "gpu":
        parser.error("--random-weights belongs to --profile gpu")
    args.engines = engines
    return args


def summary_table(results: list[ExperimentResult]) -> str:
    lines = [
        "| experiment | engine | config | status | tokens/s | total_ms | e2e ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result.rows:
            m = row.metrics
            cells = [f"{m[k]:,.1f}" if k in m else "-" for k in ("tokens_per_sec", "total_ms", "e2e_ms")]
            if "worker_total_ms" in m:
                cells[1] = f"{m['worker_total_ms']:,.1f}"
            status = row.status if row.status == "ok" else "skipped"
            lines.append(f"| {result.name} | {row.engine} | {row.label} | {status} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    random_dir = None
    if args.random_weights:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        random_dir = write_random_model(args.random_model_dir, device=device)
    ctx = make_context(
        profile=args.profile,
        smoke=args.smoke,
        engines=args.engines,
        out_root=args.out_dir,
        model=args.model,
        random_weights_dir=random_dir,
        overhead_streams=args.streams,
    )
    if ctx.profile == "cpu":
        from securechat.tiny_model import ensure_tiny_model

        ensure_tiny_model()
    from benchmarks.experiments.runner import run_experiments

    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    results = run_experiments(ctx, names, bench_app.start)
    (ctx.out_dir / "SUMMARY.md").write_text(render(ctx, results))
    print(f"results: {ctx.out_dir}")
    print(summary_table(results))


if __name__ == "__main__":
    main()
