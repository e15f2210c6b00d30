"""Every experiment of benchmarks.experiments in the cpu smoke profile: files written, JSON matches the schema.

Engine experiments run in-process; end-to-end ones deploy the bench app beside the session's Serve app (the
``ray_app`` fixture: one Ray per test session) under ``/bench`` and remove it afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.experiments import ENGINE_EXPERIMENTS, EXPERIMENTS, HTTP_EXPERIMENTS
from benchmarks.experiments.common import ExperimentResult, RunContext
from benchmarks.experiments.profiles import make_context
from benchmarks.experiments.schema import problems


def _context(out_root: Path) -> RunContext:
    return make_context(profile="cpu", smoke=True, engines=("hf", "batched"), out_root=out_root)


def _check_outputs(ctx: RunContext, results: list[ExperimentResult], names: tuple[str, ...]) -> None:
    assert [r.name for r in results] == list(names)
    assert ctx.out_dir.name.startswith("cpu-") and ctx.out_dir.parent.exists()
    for name in names:
        doc = json.loads((ctx.out_dir / f"{name}.json").read_text())
        assert problems(doc) == [], name
        assert doc["experiment"] == name and doc["smoke"] is True
        assert {row["engine"] for row in doc["rows"]} == {"hf", "batched"}
        assert any(row["status"] == "ok" for row in doc["rows"])
        table = (ctx.out_dir / f"{name}.md").read_text()
        assert table.count("\n| ") >= len(doc["rows"]) + 1  # header + one line per row
        assert (ctx.out_dir / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_engine_experiments(tiny_model_path: Path, tmp_path: Path) -> None:
    from benchmarks.experiments.runner import run_experiments
    from benchmarks.experiments.summary import render

    ctx = _context(tmp_path)

    def no_app(*_: object) -> object:
        raise AssertionError("engine experiments need no app")

    results = run_experiments(ctx, list(ENGINE_EXPERIMENTS), no_app)  # type: ignore[arg-type]
    _check_outputs(ctx, results, ENGINE_EXPERIMENTS)
    quant = json.loads((ctx.out_dir / "quantization.json").read_text())
    skipped = {row["label"].split(" ")[0] for row in quant["rows"] if row["status"] == "skipped"}
    assert {"INT8", "FP16"} <= skipped  # CPU: recorded with the engines' reasons, not silently dropped
    prompts = json.loads((ctx.out_dir / "prompt_length.json").read_text())
    lengths = {row["label"]: row["metrics"]["input_tokens"] for row in prompts["rows"] if row["engine"] == "hf"}
    assert lengths["medium"] == 159 and lengths["long"] == 408
    summary = render(ctx, results)
    assert "random weights, EOS disabled" in summary and "prototype" in summary


def test_schema_refuses_bad_documents() -> None:
    row = {"engine": "hf", "label": "x", "status": "ok", "params": {}, "metrics": {"total_ms": 0}, "summaries": {}}
    assert problems({"rows": [row]})  # top-level keys missing
    assert problems(None) == ["not an object"]


def test_random_weights_tokenizer_covers_the_vocab(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from benchmarks.experiments.prompts import prompt_of_length
    from benchmarks.experiments.random_model import QWEN25_1P5B_CONFIG, write_random_model

    small = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
    model_dir = write_random_model(tmp_path / "rnd", overrides=small)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert len(tokenizer) == QWEN25_1P5B_CONFIG["vocab_size"]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
    assert tokenizer.decode([151935, 7, 151000]) != ""  # every id the model can emit decodes
    _, num_tokens = prompt_of_length(str(model_dir), 159)
    assert num_tokens == 159


@pytest.mark.ray
def test_http_experiments(ray_app: object, tmp_path: Path) -> None:
    from benchmarks.experiments import app as bench_app
    from benchmarks.experiments.runner import run_experiments

    ctx = _context(tmp_path)
    base_url = ray_app.base_url  # type: ignore[attr-defined]
    results = run_experiments(ctx, list(HTTP_EXPERIMENTS), lambda c, t: bench_app.attach(c, t, base_url))
    _check_outputs(ctx, results, HTTP_EXPERIMENTS)
    overhead = json.loads((ctx.out_dir / "overhead.json").read_text())
    assert all(row["metrics"]["frames"] >= 2 for row in overhead["rows"])  # text frames + the final frame
    assert set(EXPERIMENTS) == set(ENGINE_EXPERIMENTS) | set(HTTP_EXPERIMENTS)
