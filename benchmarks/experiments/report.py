"""Writing one experiment's outputs: ``<name>.json``, ``<name>.md`` (a table shaped like the prototype's) and
``<name>.png`` (one bar panel per plotted metric, bars grouped by row label, one colour per engine)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt

from benchmarks.experiments.common import ENGINE_LABELS, ExperimentResult, Row, RunContext


def _cell(row: Row, key: str, digits: int) -> str:
    if key in row.metrics:
        return f"{row.metrics[key]:,.{digits}f}"
    value = row.params.get(key, "")
    return str(value)


def table(result: ExperimentResult) -> str:
    headers = ["Engine", *(c.header for c in result.columns)]
    lines = ["| " + " | ".join(headers) + " |", "|" + " :--- |" * len(headers)]
    for row in result.rows:
        first = _cell(row, result.columns[0].key, result.columns[0].digits) or row.label
        if row.status == "skipped":
            cells = [first, f"skipped: {row.reason}", *([""] * (len(result.columns) - 2))]
        else:
            cells = [first, *(_cell(row, c.key, c.digits) for c in result.columns[1:])]
        lines.append("| " + " | ".join([row.engine, *cells]) + " |")
    return "\n".join(lines)


def markdown(result: ExperimentResult, ctx: RunContext) -> str:
    parts = [
        f"## {result.title}",
        "",
        f"Card `{ctx.card}`, model {ctx.model_label}, profile `{ctx.profile}`{' (smoke)' if ctx.smoke else ''}.",
        "Values are medians (p50) over the measured requests; the JSON holds p50/p90/p99.",
        "",
        table(result),
    ]
    if result.notes:
        parts += ["", *(f"- {note}" for note in result.notes)]
    return "\n".join(parts) + "\n"


def plot(result: ExperimentResult, path: Path, ctx: RunContext) -> None:
    ok = [row for row in result.rows if row.status == "ok"]
    labels = list(dict.fromkeys(row.label for row in result.rows))
    engines = list(dict.fromkeys(row.engine for row in result.rows))
    metrics = result.plot_metrics
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(8, 6 * len(metrics)), 4.5), squeeze=False)
    width = 0.8 / max(len(engines), 1)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for index, engine in enumerate(engines):
            values = {row.label: row.metrics.get(metric, 0.0) for row in ok if row.engine == engine}
            positions = [i + index * width for i in range(len(labels))]
            heights = [values.get(label, 0.0) for label in labels]
            ax.bar(positions, heights, width, label=ENGINE_LABELS.get(engine, engine))
            for position, label in zip(positions, labels, strict=True):
                if label not in values and any(r.label == label and r.engine == engine for r in result.rows):
                    ax.text(position, 0, "skipped", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.set_xticks([i + width * (len(engines) - 1) / 2 for i in range(len(labels))])
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result.title}\n{ctx.card}\n{ctx.model_label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write(result: ExperimentResult, ctx: RunContext) -> dict[str, Path]:
    """Write the three files into ``ctx.out_dir``; returns them by kind."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: ctx.out_dir / f"{result.name}.{kind}" for kind in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(result.as_dict(ctx), indent=2) + "\n")
    paths["md"].write_text(markdown(result, ctx))
    plot(result, paths["png"], ctx)
    return paths
