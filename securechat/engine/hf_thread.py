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
from transformers import PreTrainedTokenizerBase, StoppingCriteria, TextIteratorStreamer


# Items the generation thread posts to the event loop.
@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    num_tokens: int


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

    def __init__(self, tokenizer: PreTrainedTokenizerBase, post: Callable[[Item], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._post = post
        self.num_output_tokens = 0
        self.first_token_at: float | None = None  # time.perf_counter()
        self._num_unsent_tokens = 0  # tokens decoded since the last piece (a piece may span several)

    def put(self, value: torch.Tensor) -> None:
        # value: [1, S] prompt on the first call (skip_prompt), then [1] or [1, 1] per step
        if not self.next_tokens_are_prompt:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.num_output_tokens += value.numel()
            self._num_unsent_tokens += value.numel()
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        # Tokens that decode to nothing (skipped special tokens) stay counted in num_output_tokens only.
        if text:
            self._post(Piece(text, self._num_unsent_tokens))
            self._num_unsent_tokens = 0


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
