"""Per-request token choice inside one batch, with transformers' semantics for ``SamplingParams``.

temperature 0 is greedy (argmax); otherwise logits / temperature, then top-p exactly as ``TopPLogitsWarper``
(applied only when top_p < 1), softmax and one ``torch.multinomial`` draw from the request's own generator. A
seeded request therefore draws the same numbers alone or in any batch, and on CPU the same numbers as
``model.generate`` after ``torch.manual_seed(seed)``. Before that, in order: OpenAI's presence and frequency
penalties over the tokens the sequence has generated so far (``engine/penalties.py``, which the hf engine
applies too); a constrained sequence's grammar mask (``engine/constraints.py``); with EOS disabled (benchmarks),
EOS masked for the unconstrained rows, as ``min_new_tokens`` does. Log probabilities are read from the scores
after those steps.
"""

from __future__ import annotations

import torch

from securechat.engine.batched.sequence import Sequence
from securechat.engine.constraints import mask_logits
from securechat.engine.penalties import penalize

#: A token's log probability and its top alternatives (token id, log probability).
LogprobRecord = tuple[float, tuple[tuple[int, float], ...]]


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    # scores: [1, V]; keep the smallest set whose probability reaches top_p (at least one token)
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_to_remove = cumulative_probs <= (1 - top_p)
    sorted_to_remove[..., -1:] = False
    to_remove = sorted_to_remove.scatter(1, sorted_indices, sorted_to_remove)
    return scores.masked_fill(to_remove, -float("inf"))


def process_logits(
    logits: torch.Tensor, seqs: list[Sequence], eos_mask: torch.Tensor | None, bitmask: torch.Tensor | None
) -> torch.Tensor:
    """The scores tokens are chosen from: [len(seqs), V] (B may exceed len(seqs): padded rows are dropped)."""
    num_seqs = len(seqs)
    logits = logits[:num_seqs]
    penalized = [i for i, seq in enumerate(seqs) if seq.sampling.has_penalties and seq.output_ids]
    constrained = [(i, seq.matcher) for i, seq in enumerate(seqs) if seq.matcher is not None]
    if penalized or constrained:
        logits = logits.clone()  # the graph's output buffer is reused by the next replay
    for i in penalized:
        sampling, ids = seqs[i].sampling, torch.tensor(seqs[i].output_ids, device=logits.device)
        logits[i] = penalize(logits[i], ids, sampling.presence_penalty, sampling.frequency_penalty)
    if constrained:
        assert bitmask is not None
        mask_logits(logits, constrained, bitmask)
    if eos_mask is not None:
        free_rows = torch.tensor([seq.matcher is None for seq in seqs], device=logits.device)
        logits = logits.masked_fill(free_rows[:, None] & eos_mask[None, :], -float("inf"))  # eos_mask: [V] bool
    return logits


def sample(
    logits: torch.Tensor,
    seqs: list[Sequence],
    eos_mask: torch.Tensor | None,
    bitmask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per sequence, and the scores it was chosen from. logits: [B, V] fp32.

    Returns ([len(seqs)] int64, [len(seqs), V]) on the logits' device; the caller does the one host sync.
    """
    scores = process_logits(logits, seqs, eos_mask, bitmask)
    tokens = scores.argmax(dim=-1)  # [B]; greedy rows are done
    for i, seq in enumerate(seqs):
        if seq.is_greedy:
            continue
        row = scores[i : i + 1] / seq.sampling.temperature  # [1, V]
        if seq.sampling.top_p < 1.0:
            row = top_p_filter(row, seq.sampling.top_p)
        probs = torch.softmax(row, dim=-1)
        tokens[i] = torch.multinomial(probs, num_samples=1, generator=seq.generator)[0, 0]
    return tokens, scores
