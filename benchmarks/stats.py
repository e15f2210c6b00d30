"""The one place benchmarks compute percentiles and summaries (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100] (numpy's default method)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be in [0, 100]")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Iterable[float], quantiles: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., "p99": ..., "mean": ..., "n": ...}``; empty input gives ``{"n": 0}``."""
    data = list(values)
    if not data:
        return {"n": 0}
    summary = {f"p{q:g}": round(percentile(data, q), 3) for q in quantiles}
    summary["mean"] = round(sum(data) / len(data), 3)
    summary["n"] = len(data)
    return summary
