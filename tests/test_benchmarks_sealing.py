"""The sealing benchmark's in-process half and its report, at tiny sizes (the end-to-end half needs an app)."""

from __future__ import annotations

from benchmarks.bench_sealing import AFTER, BEFORE, PREVIOUS_DEFAULT_KEYS, document_bytes, markdown, measure_suite
from securechat.keys import Suite


def test_suite_rows_measure_the_wire_and_the_time() -> None:
    rows = {suite: measure_suite(suite, reps=3) for suite in (AFTER, BEFORE)}
    assert rows[AFTER]["public_key_bytes"] == 1216 and rows[AFTER]["wrap_bytes"] == 1168
    assert rows[BEFORE]["wrap_bytes"] == 80
    # base64 of the wrap (4/3), plus the key id twice and the suite name in the base64 header
    assert rows[AFTER]["envelope_bytes_per_recipient"] > 1168 * 4 / 3 > rows[BEFORE]["envelope_bytes_per_recipient"]
    assert all(row[name] > 0 for row in rows.values() for name in ("seal_us_p50", "seal8_us_p50", "open_us_p50"))
    assert document_bytes((AFTER,)) > document_bytes((BEFORE,))
    assert document_bytes(PREVIOUS_DEFAULT_KEYS) > document_bytes((BEFORE,))


def test_the_report_names_both_suites_and_the_ratio() -> None:
    summary = {"p50": 30.0, "p90": 35.0, "mean": 31.0, "n": 2}
    report = {
        "machine": "test cpu",
        "reps": 3,
        "suites": [measure_suite(Suite.HPKE_X25519, reps=1)],
        "attestation_document_bytes": {"before": 1000, "after": 2000},
        "e2e": {
            "requests": 2,
            "max_new_tokens": 8,
            BEFORE.value: {"ttft_ms": summary},
            AFTER.value: {"ttft_ms": summary},
        },
        "ratio_ttft_p50": 1.0,
    }
    table = markdown(report)
    assert f"| before: {BEFORE.value} | 30.00 |" in table and f"| after: {AFTER.value} | 30.00 |" in table
    assert table.rstrip().endswith("Ratio after/before, TTFT p50: 1.000")
