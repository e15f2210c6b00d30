"""OpenAI's presence and frequency penalties, one definition for both engines.

Each token's logit is lowered by ``frequency * n + presence * (n > 0)``, with n the number of times the answer
so far contains it (the prompt does not count), before temperature, top-p and sampling.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


def penalize(scores: torch.Tensor, output_ids: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
    """scores: [V]; output_ids: [N] the tokens generated so far. Returns new scores."""
    counts = torch.bincount(output_ids, minlength=scores.shape[-1])[: scores.shape[-1]].to(scores.dtype)
    return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)


class PenaltiesProcessor(LogitsProcessor):
    """``penalize`` as a transformers logits processor (the hf engine), over tokens after the prompt."""

    def __init__(self, prompt_length: int, presence: float, frequency: float) -> None:
        self._prompt_length = prompt_length
        self._presence = presence
        self._frequency = frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids: [B, S] prompt + generated; scores: [B, V]
        out = scores.clone()
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self._prompt_length :]
            if generated.numel():
                out[row] = penalize(scores[row], generated, self._presence, self._frequency)
        return out  # type: ignore[return-value]
