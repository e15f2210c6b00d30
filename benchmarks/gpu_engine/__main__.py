"""``python -m benchmarks.gpu_engine [--smoke] [--out-dir DIR] [--model-dir DIR]`` (``make bench-gpu-engine``).

On one CUDA GPU, in about 8 minutes on an H200 (each progress line carries the seconds elapsed):

1. model: Qwen2.5-1.5B's shape with random weights, bf16 (``benchmarks/experiments/random_model.py``: config
   embedded, seed 1234, written once into ``--model-dir``; nothing is downloaded);
2. correctness: the first 64 greedy tokens of 8 seeded prompts (5 to 300 tokens) from the batched engine (CUDA
   graphs, split-K decode attention) against transformers' ``generate`` (bf16, sdpa), each prompt alone and
   the 8 inside one batch of 64; the first divergence of each prompt, if any (``correctness.py``);
3. speed: the batched engine at 1, 8 and 64 streams, then at 1 and 64 with the former masked-window graph body
   (ablation), and the hf engine at 1 stream: 154-token prompts, 256 new tokens, EOS off (``speed.py``);
4. ``gpu-engine.json``, ``.md`` and ``.png`` in ``--out-dir`` (``report.py``); the tables are printed last.

``--smoke``: the project's tiny model in fp32 with small sizes, on CUDA if present else on the CPU (where the
ablation runs the static graph body eagerly): a dry run of every phase. Exit status 1 when a checked prompt
diverged (after everything is written), else 0.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from benchmarks.gpu_engine import report as report_files
from benchmarks.gpu_engine.correctness import check
from benchmarks.gpu_engine.plan import FULL, SEED, SMOKE, Plan, random_prompts
from benchmarks.gpu_engine.speed import SpeedRow, measure_core, run_hf, use_static_attention

DEFAULT_MODEL_DIR = Path.home() / ".cache" / "securechat" / "models" / "qwen2.5-1.5b-random-v1"
FILLER_LENGTHS = (16, 48, 96, 154, 230, 300)


class Progress:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return round(time.perf_counter() - self.started, 1)

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed_s:7.1f} s] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_engine", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny model, fp32, small sizes (any device)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results/gpu-engine"))
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="where the random model lives")
    return parser.parse_args(argv)


def prepare_model(smoke: bool, model_dir: Path, device: torch.device) -> tuple[Path, str, str]:
    """(model directory, engine dtype, label)."""
    if smoke:
        from securechat.tiny_model import ensure_tiny_model

        return ensure_tiny_model(), "fp32", "tiny-qwen2 (random weights, smoke)"
    from benchmarks.experiments.random_model import write_random_model

    path = write_random_model(model_dir, device=device.type)
    return path, "bf16", "Qwen2.5-1.5B shape, random weights"


def speed_rows(core: Any, plan: Plan, vocab_size: int, progress: Progress) -> list[SpeedRow]:
    prompts = random_prompts([plan.prompt_tokens] * max(plan.streams), vocab_size, SEED + 2)
    rows = []
    for streams in plan.streams:
        rows.append(measure_core(core, prompts[:streams], plan.new_tokens, plan.warmup_tokens))
        progress(f"batched, {rows[-1].attention}, {streams} streams: {rows[-1].tokens_per_s} tok/s")
    use_static_attention(core, split_k=False)
    core.runner.eager_static_decode = not core.runner.use_graphs  # CPU dry run: the static body, eagerly
    for streams in plan.window_streams:
        rows.append(measure_core(core, prompts[:streams], plan.new_tokens, plan.warmup_tokens))
        progress(f"batched, {rows[-1].attention}, {streams} streams: {rows[-1].tokens_per_s} tok/s")
    return rows


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from benchmarks.experiments.prompts import prompt_of_length
    from securechat.engine.batched.config import BatchedEngineConfig
    from securechat.engine.batched.core import load_core
    from securechat.engine.batched.runner import TORCH_DTYPES
    from securechat.engine.hf import HFEngine, HFEngineConfig

    plan = SMOKE if args.smoke else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("the full run needs a CUDA GPU; use --smoke for a dry run")
    model_dir, dtype, model_label = prepare_model(args.smoke, args.model_dir, device)
    progress(f"model ready: {model_label} in {model_dir}")
    max_input_tokens = plan.max_model_len // 2
    hf_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=TORCH_DTYPES[dtype], attn_implementation="sdpa")
    hf_model.to(device)  # type: ignore[arg-type]  # transformers' stub types .to's argument oddly
    hf_model.eval()
    vocab_size = int(hf_model.config.vocab_size)
    core = load_core(
        BatchedEngineConfig(
            model=str(model_dir),
            dtype=dtype,  # type: ignore[arg-type]
            device=device.type,
            max_batch_size=max(plan.check_batch, *plan.streams),
            max_input_tokens=max_input_tokens,
            max_new_tokens=max(plan.check_tokens, plan.new_tokens),
            max_model_len=plan.max_model_len,
            disable_eos=True,
            core="thread",
        ),
        device,
    )
    progress(f"batched engine loaded ({len(core.runner.graphs)} decode graphs captured)")

    checked = random_prompts(plan.check_prompt_lengths, vocab_size, SEED)
    num_fillers = plan.check_batch - len(checked)
    filler_lengths = [min(FILLER_LENGTHS[i % len(FILLER_LENGTHS)], max_input_tokens) for i in range(num_fillers)]
    fillers = random_prompts(filler_lengths, vocab_size, SEED + 1)
    correctness = check(hf_model, core, checked, fillers, plan.check_tokens)
    progress(
        f"correctness: alone {correctness['alone']['matched']}/{len(checked)}, "
        f"in a batch of {correctness['batch_size']} {correctness['in_batch']['matched']}/{len(checked)}"
    )
    del hf_model
    rows = speed_rows(core, plan, vocab_size, progress)
    del core
    if device.type == "cuda":
        torch.cuda.empty_cache()
    messages, prompt_tokens = prompt_of_length(str(model_dir), plan.prompt_tokens)
    hf_engine = HFEngine(
        HFEngineConfig(
            model=str(model_dir),
            dtype=dtype,  # type: ignore[arg-type]
            max_input_tokens=max_input_tokens,
            max_new_tokens=plan.new_tokens,
            device=device.type,
            disable_eos=True,
        )
    )
    rows.append(run_hf(hf_engine, messages, plan.new_tokens, plan.warmup_tokens))
    progress(f"hf, 1 stream ({prompt_tokens}-token prompt): {rows[-1].tokens_per_s} tok/s")
    return {
        "benchmark": "gpu_engine",
        "smoke": args.smoke,
        "date": datetime.date.today().isoformat(),
        "device": device.type,
        "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model_label": model_label,
        "dtype": dtype,
        "seed": SEED,
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "triton": _version("triton"),
        "plan": plan.as_dict(),
        "correctness": correctness,
        "speed": [row.as_dict() for row in rows],
        "elapsed_s": progress.elapsed_s,
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    progress = Progress()
    report = run(args, progress)
    paths = report_files.write(report, args.out_dir)
    progress("wrote " + ", ".join(str(p) for p in paths))
    print(report_files.correctness_table(report))
    print()
    print(report_files.speed_table(report))
    check_result = report["correctness"]
    diverged = check_result["alone"]["divergences"] or check_result["in_batch"]["divergences"]
    return 1 if diverged else 0


if __name__ == "__main__":
    raise SystemExit(main())
