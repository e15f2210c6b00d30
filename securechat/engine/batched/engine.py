"""``BatchedEngine``: continuous batching behind the ``Engine`` contract.

One owner steps the core (model, KV cache and, on a GPU, CUDA graphs): a child process (``engine_process.py``,
the default) or a dedicated thread (``engine_thread.py``), so model work never runs on the event loop.
``generate`` hands its sequence to that owner and takes token ids from its ``Stream``; detokenisation runs
here, on the event loop. Each chunk carries every token delivered since the last one: at first one per step
(time to first token), then, after the first text, at most one chunk per ``request.delivery_interval_s``.
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
from securechat.engine.batched.core import load_core
from securechat.engine.batched.core_client import CoreInfo, EngineCoreClient, EngineDead, Stream
from securechat.engine.batched.detokenizer import IncrementalDetokenizer
from securechat.engine.batched.engine_process import EngineProcess
from securechat.engine.batched.engine_thread import EngineThread
from securechat.engine.batched.runner import device_problem
from securechat.engine.batched.sequence import Sequence
from securechat.engine.chat_template import chat_prompt_ids
from securechat.engine.device import resolve_device
from securechat.engine.stop import StopMatcher
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
        self._core_info: CoreInfo | None = None
        self._client: EngineCoreClient | None = None

    @property
    def num_slots(self) -> int:
        return self._core_info.num_slots if self._core_info is not None else 0

    @property
    def num_free_slots(self) -> int:
        """KV slots not held by a running sequence (a snapshot from the core's owner)."""
        return self._client.num_free_slots if self._client is not None else 0

    @property
    def core_client(self) -> EngineCoreClient | None:
        return self._client

    async def start(self) -> None:
        problem = device_problem(self.config.dtype, self._device)
        if problem is not None:
            raise EngineDeadError(problem)
        started_at = time.perf_counter()
        if self.config.core == "process":
            self._client = EngineProcess(self.config, str(self._device))
        else:
            self._client = EngineThread(lambda: load_core(self.config, self._device))
        try:
            self._client.start()
            path = resolve_model_path(self.config.model)
            self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, path)
            self._core_info = await asyncio.wrap_future(self._client.ready)
        except Exception as exc:
            await self.close()
            # Loading happens before any request, so the chained error holds paths, never content.
            raise EngineDeadError(f"model load failed: {type(exc).__name__}") from exc
        log_event(
            logger,
            "engine_started",
            engine="batched",
            dtype=self.config.dtype,
            batch_size=self._core_info.num_slots,
            load_ms=round((time.perf_counter() - started_at) * 1000, 1),
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.stop)
        self._core_info = None
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
        client = self._client
        if client is None or self._core_info is None:
            raise EngineError("engine_not_started")
        if len(prompt_ids) > self.config.max_input_tokens:
            raise EngineError("prompt_too_long")
        seq = Sequence(prompt_ids, request.sampling, min(request.sampling.max_new_tokens, self.config.max_new_tokens))
        stream = Stream(seq, asyncio.get_running_loop(), delivery_interval_s=request.delivery_interval_s)
        try:
            client.submit(stream)
        except EngineDead:
            raise EngineDeadError("engine_dead") from None
        detokenizer = IncrementalDetokenizer(self._tokenizer)
        stops = StopMatcher(request.sampling.stop)
        num_output_tokens = 0
        num_unsent_tokens = 0  # tokens since the last chunk (their text may still be incomplete)
        finished = False
        try:
            while not finished:
                delivery = await stream.take()
                if delivery.failure is not None:
                    code = delivery.failure
                    log_event(logger, "generation_failed", request_id=request.request_id, error_code=code)
                    raise EngineDeadError(f"engine_dead: {code}")
                finished = delivery.finished
                num_output_tokens += len(delivery.token_ids)
                num_unsent_tokens += len(delivery.token_ids)
                text = stops.push(detokenizer.push(delivery.token_ids) + (detokenizer.flush() if finished else ""))
                if finished or stops.stopped:
                    text += stops.flush()
                if text:
                    stream.eager = False  # the first text is out: from now on, chunks may coalesce
                    yield TextChunk(text=text, num_tokens=num_unsent_tokens)
                    num_unsent_tokens = 0
                if stops.stopped and not finished:  # a stop string: leave the batch now
                    client.abort(seq.seq_id)
                    finished = True
        finally:
            if not finished:  # closed, cancelled or failed: leave the batch at the next step boundary
                client.abort(seq.seq_id)
        total_ms = (time.perf_counter() - started_at) * 1000
        first_token_at = stream.first_token_at
        stats = GenerationStats(
            ttft_ms=(first_token_at - started_at) * 1000 if first_token_at is not None else total_ms,
            total_ms=total_ms,
            input_tokens=len(prompt_ids),
            output_tokens=num_output_tokens,
            finish_reason="length" if not stops.stopped and num_output_tokens >= seq.max_new_tokens else "stop",
        )
        yield TextChunk(text="", num_tokens=0, stats=stats)
