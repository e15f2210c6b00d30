"""Greedy tokens of the batched engine against transformers' ``generate``, alone and inside a full batch.

Both sides mask EOS (``min_new_tokens`` there, ``disable_eos`` here), so every prompt yields exactly
``num_tokens``. A mismatch is reported at its first step with transformers' logits there: ``top2_gap`` (top-1
minus top-2 logit) near zero means a near-tie that low-precision rounding may flip; a large ``got_gap`` (top-1
minus the logit of the engine's token) means the engine computed something else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from securechat.engine.base import SamplingParams
from securechat.engine.batched.sequence import Sequence

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from securechat.engine.batched.core import EngineCore


@dataclass(frozen=True, slots=True)
class Divergence:
    prompt: int  # index into the checked prompts
    step: int  # first generated position that differs
    expected: int
    got: int
    top2_gap: float
    got_gap: float


def reference_tokens(model: PreTrainedModel, prompts: list[list[int]], num_tokens: int) -> list[list[int]]:
    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for ids in prompts:
            input_ids = torch.tensor([ids], device=device)
            out = model.generate(  # type: ignore[operator]
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=num_tokens,
                min_new_tokens=num_tokens,
                do_sample=False,
            )
            outputs.append([int(t) for t in out[0, len(ids) :]])
    return outputs


def engine_tokens(
    core: EngineCore, prompts: list[list[int]], num_tokens: int, fillers: list[list[int]] | None = None
) -> list[list[int]]:
    """Greedy tokens of ``prompts`` submitted in one go; ``fillers`` join the same batch, interleaved."""
    seqs = [Sequence(list(ids), SamplingParams(max_new_tokens=num_tokens), num_tokens) for ids in prompts]
    others = [Sequence(list(ids), SamplingParams(max_new_tokens=num_tokens), num_tokens) for ids in fillers or []]
    stride = max(1, (len(seqs) + len(others)) // max(1, len(seqs)))
    order = list(others)
    for i, seq in enumerate(seqs):
        order.insert(min(i * stride, len(order)), seq)
    for seq in order:
        core.add(seq)
    while core.has_work:
        core.step()
    return [seq.output_ids for seq in seqs]


def first_divergence(
    model: PreTrainedModel, index: int, prompt: list[int], expected: list[int], got: list[int]
) -> Divergence | None:
    step = next((i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b), None)
    if step is None:
        return None
    device = next(model.parameters()).device
    with torch.inference_mode():
        ids = torch.tensor([prompt + expected[:step]], device=device)
        logits = model(ids).logits[0, -1].float()  # type: ignore[operator]
    top = logits.topk(2).values
    return Divergence(
        prompt=index,
        step=step,
        expected=expected[step],
        got=got[step],
        top2_gap=round(float(top[0] - top[1]), 4),
        got_gap=round(float(top[0] - logits[got[step]]), 4),
    )


def compare(
    model: PreTrainedModel, prompts: list[list[int]], expected: list[list[int]], got: list[list[int]]
) -> dict[str, Any]:
    divergences = [
        d
        for i, (ids, e, g) in enumerate(zip(prompts, expected, got, strict=True))
        if (d := first_divergence(model, i, ids, e, g)) is not None
    ]
    return {
        "prompts": len(prompts),
        "matched": len(prompts) - len(divergences),
        "divergences": [asdict(d) for d in divergences],
    }


def check(
    model: PreTrainedModel,
    core: EngineCore,
    prompts: list[list[int]],
    fillers: list[list[int]],
    num_tokens: int,
) -> dict[str, Any]:
    """``{"alone": ..., "in_batch": ..., "batch_size": ...}``, each as ``compare`` returns."""
    expected = reference_tokens(model, prompts, num_tokens)
    alone = [engine_tokens(core, [ids], num_tokens)[0] for ids in prompts]
    in_batch = engine_tokens(core, prompts, num_tokens, fillers)
    return {
        "alone": compare(model, prompts, expected, alone),
        "in_batch": compare(model, prompts, expected, in_batch),
        "batch_size": len(prompts) + len(fillers),
    }
