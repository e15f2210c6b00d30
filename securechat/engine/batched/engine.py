"""``BatchedEngine``: continuous batching behind the ``Engine`` contract.

One dedicated engine thread (``engine_thread.py``) owns the model, the KV cache and (on a GPU) the CUDA graphs;
it loads, captures and runs every step, so model work never runs on the event loop. ``generate`` hands its
sequence to that thread and reads token ids back from an ``asyncio.Queue``. Detokenisation runs here, in the
request's async generator on the event loop, never on the engine thread; each chunk carries every token that
was ready when the consumer asked, so the number of chunks does not grow with batch size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from transformers import AutoTokenizer

from securechat.engine.base import (
    ChatMessage,
    Engine,
    EngineDeadError,
    EngineError,
    GenerationRequest,
    GenerationStats,
    TextChunk,
)
from securechat.engine.batched.config import BatchedEngineConfig
from securechat.engine.batched.core import EngineCore, load_core
from securechat.engine.batched.detokenizer import IncrementalDetokenizer
from securechat.engine.batched.engine_thread import EngineDead, EngineThread, Failed, Stream
from securechat.engine.batched.runner import device_problem
from securechat.engine.batched.sequence import Sequence
from securechat.engine.chat_template import chat_prompt_ids
from securechat.engine.device import resolve_device
from securechat.logs import get_logger, log_event
from securechat.tiny_model import resolve_model_path

__all__ = ["BatchedEngine"]

logger = get_logger("engine.batched")


class BatchedEngine(Engine):
    """Own Qwen2 forward + per-slot KV cache + continuous batching; CUDA graphs per decode bucket on a GPU."""

    def __init__(self, config: BatchedEngineConfig) -> None:
        self.config = config
        self.max_concurrent_requests = config.max_batch_size
        self._device = resolve_device(config.device)
        self._tokenizer: Any = None
        self._core: EngineCore | None = None
        self._thread: EngineThread | None = None

    @property
    def num_slots(self) -> int:
        return self._core.num_slots if self._core is not None else 0

    @property
    def num_free_slots(self) -> int:
        """KV slots not held by a running sequence (read from another thread: a snapshot)."""
        return self._core.num_free_slots if self._core is not None else 0

    async def start(self) -> None:
        problem = device_problem(self.config.dtype, self._device)
        if problem is not None:
            raise EngineDeadError(problem)
        started_at = time.perf_counter()
        self._thread = EngineThread(lambda: load_core(self.config, self._device))
        self._thread.start()
        try:
            path = resolve_model_path(self.config.model)
            self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, path)
            self._core = await asyncio.wrap_future(self._thread.ready)
        except Exception as exc:
            await self.close()
            # Loading happens before any request, so the chained error holds paths, never content.
            raise EngineDeadError(f"model load failed: {type(exc).__name__}") from exc
        log_event(
            logger,
            "engine_started",
            engine="batched",
            dtype=self.config.dtype,
            batch_size=self._core.num_slots,
            load_ms=round((time.perf_counter() - started_at) * 1000, 1),
        )

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.stop)
        self._core = None
        self._tokenizer = None

    def _prompt_ids(self, messages: tuple[ChatMessage, ...]) -> list[int]:
        if self._tokenizer is None:
            raise EngineError("engine_not_started")
        return chat_prompt_ids(self._tokenizer, messages)

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return len(self._prompt_ids(messages))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextChunk]:
        started_at = time.perf_counter()
        prompt_ids = self._prompt_ids(request.messages)
        thread = self._thread
        if thread is None or self._core is None:
            raise EngineError("engine_not_started")
        if len(prompt_ids) > self.config.max_input_tokens:
            raise EngineError("prompt_too_long")
        seq = Sequence(prompt_ids, request.sampling, min(request.sampling.max_new_tokens, self.config.max_new_tokens))
        stream = Stream(seq, asyncio.get_running_loop(), asyncio.Queue())
        try:
            thread.submit(stream)
        except EngineDead:
            raise EngineDeadError("engine_dead") from None
        detokenizer = IncrementalDetokenizer(self._tokenizer)
        num_output_tokens = 0
        num_unsent_tokens = 0  # tokens since the last chunk (their text may still be incomplete)
        finished = False
        try:
            while not finished:
                items = [await stream.items.get()]
                while not stream.items.empty():  # coalesce: one chunk for everything ready
                    items.append(stream.items.get_nowait())
                new_ids: list[int] = []
                for item in items:
                    if isinstance(item, Failed):
                        code = item.error_code
                        log_event(logger, "generation_failed", request_id=request.request_id, error_code=code)
                        raise EngineDeadError(f"engine_dead: {code}")
                    new_ids.extend(item.token_ids)
                    finished = finished or item.finished
                num_output_tokens += len(new_ids)
                num_unsent_tokens += len(new_ids)
                text = detokenizer.push(new_ids) + (detokenizer.flush() if finished else "")
                if text:
                    yield TextChunk(text=text, num_tokens=num_unsent_tokens)
                    num_unsent_tokens = 0
        finally:
            if not finished:  # closed, cancelled or failed: leave the batch at the next step boundary
                thread.abort(seq.seq_id)
        total_ms = (time.perf_counter() - started_at) * 1000
        first_token_at = seq.first_token_at
        stats = GenerationStats(
            ttft_ms=(first_token_at - started_at) * 1000 if first_token_at is not None else total_ms,
            total_ms=total_ms,
            input_tokens=len(prompt_ids),
            output_tokens=num_output_tokens,
        )
        yield TextChunk(text="", num_tokens=0, stats=stats)
