"""Constrained decoding and log probabilities, one definition for both engines.

``GrammarCache`` compiles each grammar (an xgrammar structural tag, ``securechat.structured.spec``) once per
worker and keeps the most recent ones, so a schema every request of an application sends is compiled once; a
``GrammarMatcher`` per sequence then walks it. ``mask_logits`` sets every token the grammar forbids to -inf for
the rows of a batch that have a matcher (one bitmask fill per row, one masked write for the batch).
``token_logprobs`` reads a sampled token's log probability and the top alternatives from the same scores the
token was sampled from (after penalties and the grammar mask, before temperature), as vLLM reports them.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

import torch
import xgrammar

DEFAULT_CACHE_SIZE: Final = 64


class GrammarCache:
    def __init__(
        self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int], capacity: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self.vocab_size = vocab_size
        info = xgrammar.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids) or None
        )
        self._compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self._compiled: OrderedDict[str, xgrammar.CompiledGrammar] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()
        self.compilations = 0  # how many grammars were compiled (tests check the cache with it)

    def matcher(self, spec: str) -> xgrammar.GrammarMatcher:
        """A fresh matcher at the start of ``spec``'s grammar (compiled now unless cached)."""
        with self._lock:
            compiled = self._compiled.get(spec)
            if compiled is not None:
                self._compiled.move_to_end(spec)
        if compiled is None:
            compiled = self._compiler.compile_structural_tag(spec)
            with self._lock:
                self.compilations += 1
                self._compiled[spec] = compiled
                while len(self._compiled) > self._capacity:
                    self._compiled.popitem(last=False)
        return xgrammar.GrammarMatcher(compiled)

    def new_bitmask(self, rows: int) -> torch.Tensor:
        return xgrammar.allocate_token_bitmask(rows, self.vocab_size)


def mask_logits(
    logits: torch.Tensor, matchers: Sequence[tuple[int, xgrammar.GrammarMatcher]], bitmask: torch.Tensor
) -> None:
    """Forbid, in place, what each matcher's grammar does not allow next. logits: [B, V] fp32; ``matchers``:
    (row, matcher) pairs; ``bitmask``: at least B rows (``GrammarCache.new_bitmask``)."""
    if not matchers:
        return
    rows = [row for row, _ in matchers]
    _batch_matcher().batch_fill_next_token_bitmask([matcher for _, matcher in matchers], bitmask, rows)
    vocab = min(logits.shape[-1], bitmask.shape[-1] * 32)
    xgrammar.apply_token_bitmask_inplace(
        logits, bitmask.to(logits.device, non_blocking=True), vocab_size=vocab, indices=rows
    )


@functools.cache
def _batch_matcher() -> xgrammar.BatchGrammarMatcher:
    """Fills a batch's masks in one call, on xgrammar's threads (the rows are independent)."""
    return xgrammar.BatchGrammarMatcher(max_threads="auto")


def token_logprobs(scores: torch.Tensor, token_id: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """The log probability of ``token_id`` under ``scores`` ([V]) and the ``top`` likeliest tokens, skipping
    those the grammar ruled out (-inf has no JSON form)."""
    logprobs = torch.log_softmax(scores.float(), dim=-1)
    chosen = float(logprobs[token_id])
    alternatives: list[tuple[int, float]] = []
    if top:
        values, ids = torch.topk(logprobs, min(top, logprobs.shape[-1]))
        alternatives = [
            (int(i), float(v)) for v, i in zip(values.tolist(), ids.tolist(), strict=True) if v > -float("inf")
        ]
    return chosen, alternatives


def token_bytes(tokenizer: Any, vocab_size: int) -> list[bytes]:
    """Every token id's raw bytes (byte-level BPE pieces decoded to the bytes they stand for)."""
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    return list(info.decoded_vocab)
