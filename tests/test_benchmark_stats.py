import pytest

from benchmarks.stats import percentile, summarize


def test_percentile_matches_linear_interpolation() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile([5.0], 99) == 5.0


def test_percentile_refuses_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    assert summarize([]) == {"n": 0}
    summary = summarize(float(v) for v in range(1, 101))
    assert summary["p50"] == 50.5 and summary["p99"] == 99.01 and summary["n"] == 100 and summary["mean"] == 50.5
