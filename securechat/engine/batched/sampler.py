"""Per-request token choice inside one batch, with transformers' semantics for ``SamplingParams``.

temperature 0 is greedy (argmax); otherwise logits / temperature, then top-p exactly as ``TopPLogitsWarper``
(applied only when top_p < 1), softmax and one ``torch.multinomial`` draw from the request's own generator. A
seeded request therefore draws the same numbers alone or in any batch, and on CPU the same numbers as
``model.generate`` after ``torch.manual_seed(seed)``. With EOS disabled, EOS logits are masked first, as
``min_new_tokens`` does. OpenAI's presence and frequency penalties come before everything else, over the
tokens the sequence has generated so far (``engine/penalties.py``, which the hf engine applies too).
"""

from __future__ import annotations

import torch

from securechat.engine.batched.sequence import Sequence
from securechat.engine.penalties import penalize


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    # scores: [1, V]; keep the smallest set whose probability reaches top_p (at least one token)
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_to_remove = cumulative_probs <= (1 - top_p)
    sorted_to_remove[..., -1:] = False
    to_remove = sorted_to_remove.scatter(1, sorted_indices, sorted_to_remove)
    return scores.masked_fill(to_remove, -float("inf"))


def sample(logits: torch.Tensor, seqs: list[Sequence], eos_mask: torch.Tensor | None) -> torch.Tensor:
    """One token per sequence. logits: [B, V] fp32 (B may exceed len(seqs): padded rows are ignored).

    Returns [len(seqs)] int64 on the logits' device; the caller does the one host sync.
    """
    num_seqs = len(seqs)
    logits = logits[:num_seqs]
    penalized = [i for i, seq in enumerate(seqs) if seq.sampling.has_penalties and seq.output_ids]
    if penalized:
        logits = logits.clone()  # the graph's output buffer is reused by the next replay
        for i in penalized:
            sampling, ids = seqs[i].sampling, torch.tensor(seqs[i].output_ids, device=logits.device)
            logits[i] = penalize(logits[i], ids, sampling.presence_penalty, sampling.frequency_penalty)
    if eos_mask is not None:
        logits = logits.masked_fill(eos_mask, -float("inf"))  # eos_mask: [V] bool
    tokens = logits.argmax(dim=-1)  # [B]; greedy rows are done
    for i, seq in enumerate(seqs):
        if seq.is_greedy:
            continue
        scores = logits[i : i + 1] / seq.sampling.temperature  # [1, V]
        if seq.sampling.top_p < 1.0:
            scores = top_p_filter(scores, seq.sampling.top_p)
        probs = torch.softmax(scores, dim=-1)
        tokens[i] = torch.multinomial(probs, num_samples=1, generator=seq.generator)[0, 0]
    return tokens
