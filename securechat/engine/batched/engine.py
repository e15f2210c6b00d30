"""``BatchedEngine``: continuous batching behind the ``Engine`` contract.

One owner steps the core (model, KV cache and, on a GPU, CUDA graphs): a child process (``engine_process.py``,
the default) or a dedicated thread (``engine_thread.py``), so model work never runs on the event loop.
``generate`` hands its sequences (one per choice; n > 1 share one prefill) to that owner and takes token ids
from their ``Stream``s; detokenisation, stop strings and log probabilities' token bytes are done here, on the
event loop. Each chunk carries every token delivered since the last one: at first one per step
(time to first token), then, after the first text, at most one chunk per ``request.delivery_interval_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
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
    TokenLogprob,
)
from securechat.engine.batched.config import BatchedEngineConfig
from securechat.engine.batched.core import load_core
from securechat.engine.batched.core_client import (
    REQUEST_FAILURES,
    CoreInfo,
    Delivery,
    EngineCoreClient,
    EngineDead,
    Stream,
)
from securechat.engine.batched.detokenizer import IncrementalDetokenizer
from securechat.engine.batched.engine_process import EngineProcess
from securechat.engine.batched.engine_thread import EngineThread
from securechat.engine.batched.runner import device_problem
from securechat.engine.batched.sampler import LogprobRecord
from securechat.engine.batched.sequence import Sequence
from securechat.engine.chat_template import chat_prompt_ids
from securechat.engine.constraints import token_bytes
from securechat.engine.device import resolve_device
from securechat.engine.stop import StopMatcher
from securechat.logs import get_logger, log_event
from securechat.tiny_model import resolve_model_path

__all__ = ["BatchedEngine"]

logger = get_logger("engine.batched")


class BatchedEngine(Engine):
    """Own Qwen2 forward + per-slot KV cache + continuous batching; CUDA graphs per decode bucket on a GPU."""

    supports_grammar = True

    def __init__(self, config: BatchedEngineConfig) -> None:
        self.config = config
        self.max_concurrent_requests = config.max_batch_size
        self._device = resolve_device(config.device)
        self._tokenizer: Any = None
        self._core_info: CoreInfo | None = None
        self._client: EngineCoreClient | None = None
        self._token_table: list[bytes] | None = None  # token id -> raw bytes, for log probabilities

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

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if self._tokenizer is None:
            raise EngineError("engine_not_started")
        return chat_prompt_ids(self._tokenizer, request.messages, request.tools, raw=request.raw_prompt)

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        if self._tokenizer is None:
            raise EngineError("engine_not_started")
        return len(chat_prompt_ids(self._tokenizer, messages))

    def _token_bytes(self) -> list[bytes]:
        if self._token_table is None:
            self._token_table = token_bytes(self._tokenizer, self._vocab_size())
        return self._token_table

    def _vocab_size(self) -> int:
        return max(len(self._tokenizer), self._tokenizer.vocab_size)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextChunk]:
        started_at = time.perf_counter()
        prompt_ids = self._prompt_ids(request)
        client = self._client
        if client is None or self._core_info is None:
            raise EngineError("engine_not_started")
        if len(prompt_ids) > self.config.max_input_tokens:
            raise EngineError("prompt_too_long")
        loop = asyncio.get_running_loop()
        max_new_tokens = min(request.sampling.max_new_tokens, self.config.max_new_tokens)
        choices: list[_Choice] = []
        for index in range(request.n):
            # Choice i of a seeded request draws from seed + i: each is reproducible, and they differ.
            seed = request.sampling.seed
            sampling = request.sampling if seed is None or index == 0 else replace(request.sampling, seed=seed + index)
            seq = Sequence(prompt_ids, sampling, max_new_tokens, grammar=request.grammar)
            if index == 0:
                seq.group_size = request.n
            else:
                seq.prefill_from = choices[0].seq.seq_id
            stream = Stream(seq, loop, delivery_interval_s=request.delivery_interval_s)
            choices.append(
                _Choice(index, seq, stream, IncrementalDetokenizer(self._tokenizer), StopMatcher(sampling.stop))
            )
        try:
            for choice in choices:
                client.submit(choice.stream)
        except EngineDead:
            for choice in choices:
                client.abort(choice.seq.seq_id)
            raise EngineDeadError("engine_dead") from None
        table = self._token_bytes() if request.sampling.logprobs else None
        merged: asyncio.Queue[tuple[_Choice, Delivery]] = asyncio.Queue()

        async def pump(choice: _Choice) -> None:
            while True:
                delivery = await choice.stream.take()
                await merged.put((choice, delivery))
                if delivery.finished or delivery.failure is not None:
                    return

        pumps = [asyncio.create_task(pump(choice)) for choice in choices]
        try:
            while not all(choice.finished for choice in choices):
                choice, delivery = await merged.get()
                if choice.finished:
                    continue  # a stop string ended it; tokens already on their way are dropped
                if delivery.failure is not None:
                    code = delivery.failure
                    log_event(logger, "generation_failed", request_id=request.request_id, error_code=code)
                    if code in REQUEST_FAILURES:
                        raise EngineError(code)
                    raise EngineDeadError(f"engine_dead: {code}")
                chunk = choice.take(delivery, table, max_new_tokens)
                if choice.stops.stopped and not delivery.finished:  # a stop string: leave the batch now
                    client.abort(choice.seq.seq_id)
                if chunk is not None:
                    choice.stream.eager = False  # the first text is out: from now on, chunks may coalesce
                    yield chunk
        finally:
            for task in pumps:
                task.cancel()
            for choice in choices:
                if not choice.finished:  # closed, cancelled or failed: leave the batch at the next step boundary
                    client.abort(choice.seq.seq_id)
        total_ms = (time.perf_counter() - started_at) * 1000
        first_token_at = min((c.stream.first_token_at for c in choices if c.stream.first_token_at), default=None)
        stats = GenerationStats(
            ttft_ms=(first_token_at - started_at) * 1000 if first_token_at is not None else total_ms,
            total_ms=total_ms,
            input_tokens=len(prompt_ids),
            output_tokens=sum(choice.num_output_tokens for choice in choices),
            finish_reason=choices[0].finish_reason,
        )
        yield TextChunk(text="", num_tokens=0, stats=stats)


@dataclass(slots=True, eq=False)
class _Choice:
    """One choice of a request as it streams: its sequence, and the text it has shown."""

    index: int
    seq: Sequence
    stream: Stream
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    num_output_tokens: int = 0
    num_unsent_tokens: int = 0  # tokens since the last chunk (their text may still be incomplete)
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    finished: bool = False
    finish_reason: str = "stop"

    def take(self, delivery: Delivery, table: list[bytes] | None, max_new_tokens: int) -> TextChunk | None:
        """The chunk ``delivery`` makes visible, if any; marks the choice finished at its end."""
        self.num_output_tokens += len(delivery.token_ids)
        self.num_unsent_tokens += len(delivery.token_ids)
        if table is not None:
            self.pending_logprobs += [
                _token_logprob(table, token_id, record)
                for token_id, record in zip(delivery.token_ids, delivery.logprobs, strict=True)
                if record is not None
            ]
        end = delivery.finished
        pushed = self.detokenizer.push(delivery.token_ids) + (self.detokenizer.flush() if end else "")
        text = self.stops.push(pushed)
        if end or self.stops.stopped:
            text += self.stops.flush()
            self.finished = True
            length = not self.stops.stopped and self.num_output_tokens >= max_new_tokens
            self.finish_reason = "length" if length else "stop"
        if not text and not self.finished and not self.pending_logprobs:
            return None
        chunk = TextChunk(
            text=text,
            num_tokens=self.num_unsent_tokens,
            index=self.index,
            logprobs=tuple(self.pending_logprobs),
            finish_reason=self.finish_reason if self.finished else None,
        )
        self.num_unsent_tokens = 0
        self.pending_logprobs = []
        return chunk


def _token_logprob(table: list[bytes], token_id: int, record: LogprobRecord) -> TokenLogprob:
    logprob, alternatives = record

    def raw(i: int) -> bytes:  # ids past the tokenizer's vocabulary (a padded embedding) have no bytes
        return table[i] if i < len(table) else b""

    return TokenLogprob(raw(token_id), logprob, tuple((raw(i), value) for i, value in alternatives))
