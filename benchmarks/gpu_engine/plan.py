"""How much work each phase does (the full GPU run and ``--smoke``), and the seeded prompts it feeds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

import torch

SEED: Final = 1234


@dataclass(frozen=True, slots=True)
class Plan:
    check_prompt_lengths: tuple[int, ...]  # prompts checked token for token against transformers' generate
    check_tokens: int  # greedy tokens compared per prompt
    check_batch: int  # the batch the checked prompts also run inside (the rest: filler prompts)
    prompt_tokens: int  # speed runs: every stream's prompt
    new_tokens: int  # speed runs: tokens per stream, EOS off
    streams: tuple[int, ...]  # batched engine, split-K kernel in the decode graphs
    window_streams: tuple[int, ...]  # batched engine, the former masked-window graph body (ablation)
    max_model_len: int  # the static window the former body gathered every step
    warmup_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL: Final = Plan(
    check_prompt_lengths=(154, 16, 77, 300, 5, 128, 211, 40),
    check_tokens=64,
    check_batch=64,
    prompt_tokens=154,
    new_tokens=256,
    streams=(1, 8, 64),
    window_streams=(1, 64),
    max_model_len=4096,
    warmup_tokens=8,
)
SMOKE: Final = Plan(
    check_prompt_lengths=(40, 5, 17, 60, 3, 25, 33, 9),
    check_tokens=12,
    check_batch=12,
    prompt_tokens=40,
    new_tokens=12,
    streams=(1, 8),
    window_streams=(8,),
    max_model_len=256,
    warmup_tokens=2,
)


def random_prompts(lengths: list[int] | tuple[int, ...], vocab_size: int, seed: int) -> list[list[int]]:
    """Seeded token ids; ids 0-2 and Qwen's specials (151643+) are left out, so no prompt holds a control token."""
    generator = torch.Generator().manual_seed(seed)
    high = min(vocab_size, 151643)
    return [torch.randint(3, high, (n,), generator=generator).tolist() for n in lengths]
