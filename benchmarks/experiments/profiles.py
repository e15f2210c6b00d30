"""The two profiles (``cpu``: the embedded tiny model; ``gpu``: Qwen2.5-1.5B-Instruct) and the smoke sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

from benchmarks.experiments.common import RunContext, Sizes, card_slug, results_dir
from securechat.tiny_model import TINY_MODEL_NAME

GPU_MODEL: Final = "Qwen/Qwen2.5-1.5B-Instruct"
# The prototype's prompt sizes: short / medium / long (experiment 2), ~154 (experiment 1), ~248 (experiment 5).
PROMPT_TOKENS: Final = {"short": 21, "medium": 159, "long": 408, "quant": 154, "concurrency": 248}

CPU_SIZES: Final = Sizes(
    quant_max_tokens=(128, 256, 512),
    max_new_tokens=512,
    prompt_tokens=PROMPT_TOKENS,
    repeats=5,
    http_max_new_tokens=128,
    overhead_max_new_tokens=64,
    overhead_streams=(1, 8),
    concurrency_levels=(1, 2, 4),
    multi_worker_requests=4,
    http_rounds=3,
)
SMOKE_SIZES: Final = dataclasses.replace(
    CPU_SIZES,
    quant_max_tokens=(8, 16),
    max_new_tokens=8,
    repeats=1,
    http_max_new_tokens=8,
    overhead_max_new_tokens=8,
    overhead_streams=(1, 2),
    concurrency_levels=(1, 2),
    http_rounds=1,
)
GPU_SIZES: Final = dataclasses.replace(
    CPU_SIZES, http_max_new_tokens=512, overhead_max_new_tokens=128, overhead_streams=(1, 64)
)


def make_context(
    *,
    profile: str,
    smoke: bool,
    engines: tuple[str, ...],
    out_root: Path,
    model: str | None = None,
    random_weights_dir: Path | None = None,
    overhead_streams: int | None = None,
) -> RunContext:
    """``random_weights_dir`` (gpu only): a model dir written by ``random_model.write_random_model``."""
    if profile == "cpu":
        sizes = SMOKE_SIZES if smoke else CPU_SIZES
        name = model or TINY_MODEL_NAME
        label = f"{name} (embedded tiny Qwen2, random weights, EOS disabled)" if name == TINY_MODEL_NAME else name
        random_weights, disable_eos, device, dtype = name == TINY_MODEL_NAME, True, "cpu", "fp32"
    elif profile == "gpu":
        sizes = SMOKE_SIZES if smoke else GPU_SIZES
        random_weights = random_weights_dir is not None
        name = str(random_weights_dir) if random_weights_dir is not None else (model or GPU_MODEL)
        label = "Qwen2.5-1.5B shape, random weights, EOS disabled" if random_weights else name
        disable_eos, device, dtype = random_weights, "cuda", "fp16"
    else:
        raise ValueError("profile must be cpu or gpu")
    if overhead_streams is not None:
        sizes = dataclasses.replace(sizes, overhead_streams=(1, overhead_streams))
    card = card_slug(device)
    return RunContext(
        profile=profile,
        smoke=smoke,
        model=name,
        model_label=label,
        random_weights=random_weights,
        disable_eos=disable_eos,
        device=device,
        dtype=dtype,
        engines=engines,
        sizes=sizes,
        card=card,
        out_dir=results_dir(out_root, card),
    )
