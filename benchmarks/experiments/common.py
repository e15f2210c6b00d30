"""What every experiment shares: the run context (profile, model, where results go) and the result shape.

A result is a list of rows. Each row is one configuration (engine + label) that either ran (``status`` "ok",
with positive ``metrics`` and, where it served more than one request, ``summaries`` from
``benchmarks.stats.summarize``) or could not run here (``status`` "skipped" with a content-free ``reason``).
"""

from __future__ import annotations

import datetime
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

SCHEMA_VERSION: Final = 1
SEED: Final = 1234
ENGINES: Final = ("hf", "batched")
ENGINE_LABELS: Final = {"hf": "hf (prototype's way)", "batched": "batched (ours)"}

Status = Literal["ok", "skipped"]
Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each experiment does; the profiles in ``profiles.py`` pick these."""

    quant_max_tokens: tuple[int, ...]  # the quantization sweep's max_new_tokens
    max_new_tokens: int  # prompt_length and attention
    prompt_tokens: dict[str, int]  # input tokens after the chat template: short, medium, long, quant, concurrency
    repeats: int  # measured requests per configuration, after one warm-up request
    http_max_new_tokens: int  # overhead, concurrency, multi_worker
    overhead_max_new_tokens: int  # lower than the others: N streams on one hf worker run one at a time
    overhead_streams: tuple[int, ...]  # concurrent streams in the overhead experiment (1 and N)
    concurrency_levels: tuple[int, ...]
    multi_worker_requests: int
    http_rounds: int  # measured rounds per HTTP configuration, after one warm-up round


@dataclass(frozen=True, slots=True)
class RunContext:
    profile: str  # "cpu" | "gpu"
    smoke: bool
    model: str  # hub id, local dir or the tiny model's name
    model_label: str  # what the outputs call it
    random_weights: bool
    disable_eos: bool
    device: str  # "cpu" | "cuda"
    dtype: str  # the default dtype of both engines in this profile
    engines: tuple[str, ...]
    sizes: Sizes
    card: str
    out_dir: Path  # <results>/<card>-<date>

    def base_info(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "schema_version": SCHEMA_VERSION,
            "profile": self.profile,
            "smoke": self.smoke,
            "card": self.card,
            "device": self.device,
            "model": self.model,
            "model_label": self.model_label,
            "random_weights": self.random_weights,
            "eos_disabled": self.disable_eos,
            "dtype": self.dtype,
            "seed": SEED,
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        }


@dataclass(slots=True)
class Row:
    engine: str
    label: str
    params: dict[str, Scalar] = field(default_factory=dict)
    status: Status = "ok"
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    summaries: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def skipped(cls, engine: str, label: str, reason: str, params: Mapping[str, Scalar] | None = None) -> Row:
        return cls(engine=engine, label=label, params=dict(params or {}), status="skipped", reason=reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "label": self.label,
            "status": self.status,
            "reason": self.reason,
            "params": self.params,
            "metrics": {k: round(v, 3) for k, v in self.metrics.items()},
            "summaries": self.summaries,
        }


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    key: str  # a key of Row.params or Row.metrics
    digits: int = 1


@dataclass(slots=True)
class ExperimentResult:
    name: str
    title: str
    params: dict[str, Any]
    rows: list[Row]
    columns: tuple[Column, ...]  # the markdown table, shaped like the prototype's
    plot_metrics: tuple[str, ...]  # metrics drawn in the PNG, one panel each
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def as_dict(self, ctx: RunContext) -> dict[str, Any]:
        return {
            **ctx.base_info(),
            "experiment": self.name,
            "title": self.title,
            "params": self.params,
            "wall_s": round(self.wall_s, 3),
            "notes": self.notes,
            "rows": [row.as_dict() for row in self.rows],
        }


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def slugify(text: str) -> str:
    cleaned = re.sub(r"\((r|tm|c)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", cleaned).strip("-") or "unknown"


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def card_slug(device: str) -> str:
    """``torch.cuda.get_device_name()`` slugified on a GPU, ``cpu-<cpu model>`` otherwise."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return slugify(torch.cuda.get_device_name())
    return "cpu-" + slugify(cpu_model_name())


def results_dir(root: Path, card: str) -> Path:
    return root / f"{card}-{datetime.date.today().isoformat()}"
