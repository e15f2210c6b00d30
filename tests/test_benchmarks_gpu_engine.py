"""``python -m benchmarks.gpu_engine --smoke`` end to end on the CPU, in a fresh interpreter that must not import
ray, fastapi or cryptography (GPU hosts have none of them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_RUN = """
import sys
from benchmarks.gpu_engine.__main__ import main
status = main(["--smoke", "--out-dir", sys.argv[1]])
forbidden = sorted({m.split(".")[0] for m in sys.modules} & {"ray", "fastapi", "cryptography"})
print("forbidden imports:", forbidden)
raise SystemExit(status if not forbidden else 3)
"""


def test_smoke_run_writes_report_without_crypto_or_ray(tiny_model_path: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "forbidden imports: []" in done.stdout
    report = json.loads((tmp_path / "gpu-engine.json").read_text())
    assert report["smoke"] is True and report["dtype"] == "fp32"
    for part in ("alone", "in_batch"):
        assert report["correctness"][part] == {"prompts": 8, "matched": 8, "divergences": []}
    rows = report["speed"]
    assert [(r["engine"], r["attention"], r["streams"]) for r in rows] == [
        ("batched", "per-sequence (eager)", 1),
        ("batched", "per-sequence (eager)", 8),
        ("batched", "masked window", 8),
        ("hf", "hf sdpa", 1),
    ]
    plan = report["plan"]
    assert all(r["output_tokens"] == r["streams"] * plan["new_tokens"] and r["tokens_per_s"] > 0 for r in rows)
    assert "| batched | masked window | 8 |" in (tmp_path / "gpu-engine.md").read_text()
    assert (tmp_path / "gpu-engine.png").read_bytes().startswith(b"\x89PNG")
    assert done.stdout.rstrip().splitlines()[-2].startswith("| hf | hf sdpa | 1 |")  # the tables come last
