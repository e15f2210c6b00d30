"""The JSON schema of one experiment's results (documented in benchmarks/README.md), as a checker.

``problems(doc)`` returns what is wrong (empty when valid): the test and the runner both use it.
"""

from __future__ import annotations

import math
from typing import Any, Final

TOP_LEVEL: Final[dict[str, type | tuple[type, ...]]] = {
    "schema_version": int,
    "experiment": str,
    "title": str,
    "profile": str,
    "smoke": bool,
    "card": str,
    "device": str,
    "model": str,
    "model_label": str,
    "random_weights": bool,
    "eos_disabled": bool,
    "dtype": str,
    "seed": int,
    "date": str,
    "torch": str,
    "transformers": str,
    "python": str,
    "torch_threads": int,
    "params": dict,
    "wall_s": (int, float),
    "notes": list,
    "rows": list,
}
ROW: Final[dict[str, type | tuple[type, ...]]] = {
    "engine": str,
    "label": str,
    "status": str,
    "params": dict,
    "metrics": dict,
    "summaries": dict,
}
SUMMARY_KEYS: Final = ("p50", "p90", "p99", "mean", "n")


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _row_problems(index: int, row: Any) -> list[str]:
    where = f"rows[{index}]"
    if not isinstance(row, dict):
        return [f"{where} is not an object"]
    problems = [f"{where}.{k} missing or not {t}" for k, t in ROW.items() if not isinstance(row.get(k), t)]
    if problems:
        return problems
    if row["status"] == "skipped":
        if not isinstance(row.get("reason"), str) or not row["reason"]:
            problems.append(f"{where} is skipped without a reason")
        return problems
    if row["status"] != "ok":
        return [f"{where}.status is {row['status']!r}"]
    if not row["metrics"]:
        problems.append(f"{where} ran but has no metrics")
    problems += [f"{where}.metrics.{k} = {v!r} is not > 0" for k, v in row["metrics"].items() if not _positive(v)]
    for metric, summary in row["summaries"].items():
        if not isinstance(summary, dict) or any(not _positive(summary.get(k)) for k in SUMMARY_KEYS):
            problems.append(f"{where}.summaries.{metric} lacks positive {SUMMARY_KEYS}")
        elif summary["n"] < 2:
            problems.append(f"{where}.summaries.{metric} summarizes fewer than 2 requests")
    return problems


def problems(doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        return ["not an object"]
    found = [f"{k} missing or not {t}" for k, t in TOP_LEVEL.items() if not isinstance(doc.get(k), t)]
    if found:
        return found
    if not doc["rows"]:
        found.append("no rows")
    for index, row in enumerate(doc["rows"]):
        found += _row_problems(index, row)
    return found
