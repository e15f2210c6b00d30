"""The run's outputs: ``gpu-engine.json`` (the whole report), ``gpu-engine.md`` (tables), ``gpu-engine.png``
(tok/s and ms per decode step per row, when matplotlib is installed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

STEM = "gpu-engine"


def correctness_table(report: dict[str, Any]) -> str:
    check = report["correctness"]
    lines = [
        f"Greedy tokens vs transformers `generate` ({report['plan']['check_tokens']} tokens, {report['dtype']}):",
        "",
        "| run | prompts matched | first divergences (prompt@step: expected/got, top-2 gap, got gap) |",
        "|---|---|---|",
    ]
    for name, label in (("alone", "each prompt alone"), ("in_batch", f"inside a batch of {check['batch_size']}")):
        part = check[name]
        diverged = "; ".join(
            f"{d['prompt']}@{d['step']}: {d['expected']}/{d['got']}, {d['top2_gap']}, {d['got_gap']}"
            for d in part["divergences"]
        )
        lines.append(f"| {label} | {part['matched']}/{part['prompts']} | {diverged or 'none'} |")
    return "\n".join(lines)


def speed_table(report: dict[str, Any]) -> str:
    plan = report["plan"]
    lines = [
        f"{plan['prompt_tokens']}-token prompts, {plan['new_tokens']} new tokens per stream, greedy, EOS off; "
        f"KV window {plan['max_model_len']}.",
        "",
        "| engine | decode attention | streams | tok/s | TTFT p50 ms | TTFT max ms | ms/decode step p50 | mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["speed"]:
        p50 = row["decode_step_ms_p50"]
        lines.append(
            f"| {row['engine']} | {row['attention']} | {row['streams']} | {row['tokens_per_s']:,.1f} | "
            f"{row['ttft_ms_p50']} | {row['ttft_ms_max']} | {'-' if p50 is None else p50} | "
            f"{row['decode_step_ms_mean']} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    head = (
        f"# Batched engine on {report['card']} ({report['date']})\n\n"
        f"Model: {report['model_label']}; dtype {report['dtype']}; torch {report['torch']}, "
        f"transformers {report['transformers']}, triton {report['triton']}; total {report['elapsed_s']} s.\n"
    )
    return f"{head}\n{correctness_table(report)}\n\n{speed_table(report)}\n"


def write(report: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{STEM}.json", out_dir / f"{STEM}.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(report))
    if importlib.util.find_spec("matplotlib") is not None:
        paths.append(_plot(report, out_dir / f"{STEM}.png"))
    return paths


def _plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["speed"]
    labels = [f"{r['engine']}, {r['attention']}, {r['streams']} streams" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.5 * len(rows)), sharey=True)
    left.barh(labels, [r["tokens_per_s"] for r in rows], color="tab:blue")
    left.set_xlabel("aggregate tokens/s")
    left.invert_yaxis()  # rows top to bottom as in the table
    right.barh(labels, [r["decode_step_ms_mean"] for r in rows], color="tab:orange")
    right.set_xlabel("ms per decode step (mean)")
    fig.suptitle(f"{report['model_label']} on {report['card']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
