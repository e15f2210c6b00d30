"""The bridge between ``model.generate``'s thread and the event loop, for the hf engine.

The generation thread posts items (text pieces, a failure, the end) to the loop with ``call_soon_threadsafe``;
a stopping criterion watches an event set when the consumer goes away; sampling is seeded per request without
disturbing torch's global RNG.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase, StoppingCriteria, TextIteratorStreamer

from securechat.engine.constraints import mask_logits, token_logprobs


# Items the generation thread posts to the event loop.
@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    num_tokens: int
    logprobs: tuple[tuple[int, float, tuple[tuple[int, float], ...]], ...] = ()  # (token id, logprob, top)


@dataclass(frozen=True, slots=True)
class Failed:
    error_type: str  # exception type name only: messages may quote content
    device_broken: bool  # a CUDA/accelerator fault: the context is unusable, the worker must be replaced


def device_broken(exc: BaseException) -> bool:
    """CUDA errors poison the process's context (an OOM does not): later requests would fail or misbehave."""
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and not isinstance(exc, torch.OutOfMemoryError) and "CUDA error" in str(exc)


class Finished:
    pass


Item = Piece | Failed | Finished


class LoopStreamer(TextIteratorStreamer):
    """Decodes like ``TextIteratorStreamer``, but posts each text piece to the loop (no blocking queue).

    Also counts generated token ids (not text pieces) and stamps the first one, for exact stats.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, post: Callable[[Item], None], recorder: LogprobRecorder | None = None
    ) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._post = post
        self._recorder = recorder
        self.num_output_tokens = 0
        self.first_token_at: float | None = None  # time.perf_counter()
        self._num_unsent_tokens = 0  # tokens decoded since the last piece (a piece may span several)
        self._unsent_logprobs: list[tuple[int, float, tuple[tuple[int, float], ...]]] = []

    def put(self, value: torch.Tensor) -> None:
        # value: [1, S] prompt on the first call (skip_prompt), then [1] or [1, 1] per step
        if not self.next_tokens_are_prompt:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.num_output_tokens += value.numel()
            self._num_unsent_tokens += value.numel()
            if self._recorder is not None:
                token_id = int(value.reshape(-1)[0])
                logprob, alternatives = self._recorder.record(token_id)
                self._unsent_logprobs.append((token_id, logprob, tuple(alternatives)))
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        # Tokens that decode to nothing (skipped special tokens) stay counted in num_output_tokens only.
        if text or (stream_end and self._unsent_logprobs):
            self._post(Piece(text, self._num_unsent_tokens, tuple(self._unsent_logprobs)))
            self._num_unsent_tokens = 0
            self._unsent_logprobs = []


class LogprobRecorder(LogitsProcessor):
    """The last logits processor: keeps the scores the next token is sampled from, so the streamer can read
    that token's log probability and the top alternatives when it arrives."""

    def __init__(self, top: int) -> None:
        self._top = top
        self._scores: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._scores = scores[0]  # [V]: one sequence
        return scores

    def record(self, token_id: int) -> tuple[float, list[tuple[int, float]]]:
        assert self._scores is not None
        return token_logprobs(self._scores, token_id, self._top)


class GrammarProcessor(LogitsProcessor):
    """Constrained decoding for ``model.generate``: the matcher takes each token generated so far, then every
    token its grammar forbids next is set to -inf."""

    def __init__(self, matcher: Any, bitmask: torch.Tensor, prompt_length: int) -> None:
        self._matcher = matcher
        self._bitmask = bitmask
        self._accepted = prompt_length  # input_ids before this index went through the matcher (or are prompt)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids: [1, S] prompt + generated; scores: [1, V]
        for token_id in input_ids[0, self._accepted :].tolist():
            self._matcher.accept_token(int(token_id))
        self._accepted = input_ids.shape[1]
        out = scores.clone()
        mask_logits(out, [(0, self._matcher)], self._bitmask)
        return out  # type: ignore[return-value]


class StopOnEvent(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        # input_ids: [B, S]; one verdict per sequence
        verdict = torch.full((input_ids.shape[0],), self._event.is_set(), device=input_ids.device)
        return verdict  # type: ignore[return-value]


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG (what ``generate`` samples from) for this block only, then restore it."""
    if seed is None:
        yield
        return
    if device.type == "cuda":
        cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    else:
        cuda_devices = []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield
