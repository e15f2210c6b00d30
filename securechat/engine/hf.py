"""The prototype's engine: ``AutoModelForCausalLM.generate`` in a background thread, streamed to the loop.

One request at a time. ``model.generate`` runs in a worker thread; a streamer subclass decodes the new tokens
and hands each text piece to the event loop with ``call_soon_threadsafe``, so the loop never blocks on the
model. A ``threading.Event`` checked by a stopping criterion ends generation when the consumer goes away.

``SamplingParams`` is the whole sampling policy: temperature 0 is greedy, otherwise temperature + top_p with
no top-k and no repetition penalty (the model's ``generation_config`` defaults for those are overridden), so
the same request means the same thing on every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteriaList,
)

from securechat.engine.base import (
    ChatMessage,
    Engine,
    EngineDeadError,
    EngineError,
    GenerationRequest,
    GenerationStats,
    SamplingParams,
    TextChunk,
    TokenLogprob,
)
from securechat.engine.chat_template import chat_prompt_ids
from securechat.engine.constraints import GrammarCache, token_bytes
from securechat.engine.device import resolve_device
from securechat.engine.hf_thread import (
    Failed,
    Finished,
    GrammarProcessor,
    Item,
    LogprobRecorder,
    LoopStreamer,
    Piece,
    StopOnEvent,
    device_broken,
    seeded,
)
from securechat.engine.penalties import PenaltiesProcessor
from securechat.engine.stop import StopMatcher
from securechat.logs import get_logger, log_event
from securechat.tiny_model import resolve_model_path

__all__ = ["HFEngine", "HFEngineConfig"]

Dtype = Literal["fp16", "bf16", "fp32"]
Quantization = Literal["none", "int8"]
AttnImplementation = Literal["sdpa", "eager", "flash_attention_2"]

_TORCH_DTYPES: Final[dict[str, torch.dtype]] = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
}
_QUANTIZATIONS: Final = ("none", "int8")
_ATTN_IMPLEMENTATIONS: Final = ("sdpa", "eager", "flash_attention_2")
_THREAD_NAME: Final = "securechat-hf-generate"

logger = get_logger("engine.hf")


@dataclass(frozen=True, slots=True, kw_only=True)
class HFEngineConfig:
    model: str  # hub id, local dir, or TINY_MODEL_NAME
    dtype: Dtype
    max_input_tokens: int  # prompt tokens after the chat template
    max_new_tokens: int = 512  # cap on SamplingParams.max_new_tokens
    quantization: Quantization = "none"
    attn_implementation: AttnImplementation = "sdpa"
    device: str = "auto"  # "auto" = "cuda" when available, else "cpu"
    disable_eos: bool = False  # always generate max_new_tokens (benchmarks with random weights)

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must be set")
        if self.dtype not in _TORCH_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_TORCH_DTYPES)}")
        if self.quantization not in _QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {_QUANTIZATIONS}")
        if self.attn_implementation not in _ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {_ATTN_IMPLEMENTATIONS}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as exc:
                raise ValueError("device must be 'auto' or a torch device such as 'cpu' or 'cuda:0'") from exc
        if self.max_input_tokens < 1:
            raise ValueError("max_input_tokens must be >= 1")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


def check_requirements(config: HFEngineConfig, device: torch.device) -> None:
    """Refuse, with what to change or install, combinations that cannot load here."""
    on_cuda = device.type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        raise EngineDeadError("device cuda requested but CUDA is not available; use device cpu")
    if config.dtype == "fp16" and not on_cuda:
        raise EngineDeadError("dtype fp16 is not supported on CPU; use dtype fp32 or bf16")
    if config.quantization == "int8":
        if not on_cuda:
            raise EngineDeadError("quantization int8 needs CUDA (bitsandbytes); use quantization none on CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise EngineDeadError("quantization int8 needs the bitsandbytes package: pip install 'securechat[gpu]'")
    if config.attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise EngineDeadError(
                "attn_implementation flash_attention_2 needs the flash_attn package: "
                "pip install 'securechat[gpu]', or use attn_implementation sdpa"
            )
        if not on_cuda:
            raise EngineDeadError("attn_implementation flash_attention_2 needs CUDA; use sdpa or eager")
        if config.dtype == "fp32":
            raise EngineDeadError("attn_implementation flash_attention_2 needs dtype fp16 or bf16")


class HFEngine(Engine):
    """Hugging Face transformers runtime: fp16/bf16/fp32, bitsandbytes int8, sdpa/eager/flash_attention_2."""

    max_concurrent_requests = 1
    supports_grammar = True

    def __init__(self, config: HFEngineConfig) -> None:
        self.config = config
        self._device = resolve_device(config.device)
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._grammar_cache: GrammarCache | None = None
        self._token_table: list[bytes] | None = None

    async def start(self) -> None:
        check_requirements(self.config, self._device)
        started_at = time.perf_counter()
        try:
            self._tokenizer, self._model = await asyncio.to_thread(self._load)
        except Exception as exc:
            # Loading happens before any request, so the chained error holds paths, never content.
            raise EngineDeadError(f"model load failed: {type(exc).__name__}") from exc
        log_event(
            logger,
            "engine_started",
            engine="hf",
            dtype=self.config.dtype,
            attn_implementation=self.config.attn_implementation,
            load_ms=round((time.perf_counter() - started_at) * 1000, 1),
        )

    def _load(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        path = resolve_model_path(self.config.model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs: dict[str, Any] = {
            "dtype": _TORCH_DTYPES[self.config.dtype],
            "attn_implementation": self.config.attn_implementation,
            # Load straight onto the device (bitsandbytes refuses .to() on a quantized model anyway).
            "device_map": {"": self._device},
        }
        if self.config.quantization == "int8":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        model.eval()
        return tokenizer, model

    async def close(self) -> None:
        self._model = None
        self._tokenizer = None
        self._grammar_cache = None
        self._token_table = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _require_started(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        if self._tokenizer is None or self._model is None:
            raise EngineError("engine_not_started")
        return self._tokenizer, self._model

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        tokenizer, _ = self._require_started()
        return len(chat_prompt_ids(tokenizer, messages))

    def _generate_kwargs(
        self, sampling: SamplingParams, tokenizer: PreTrainedTokenizerBase, processors: list[LogitsProcessor]
    ) -> dict[str, Any]:
        max_new_tokens = min(sampling.max_new_tokens, self.config.max_new_tokens)
        pad_token_id = tokenizer.pad_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sampling.temperature > 0,
            "repetition_penalty": 1.0,
            "pad_token_id": pad_token_id if pad_token_id is not None else tokenizer.eos_token_id,
        }
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        if self.config.disable_eos and not any(isinstance(p, GrammarProcessor) for p in processors):
            kwargs["min_new_tokens"] = max_new_tokens  # masks every EOS id until the budget is spent
        return kwargs

    def _processors(
        self, request: GenerationRequest, sampling: SamplingParams, prompt_length: int
    ) -> tuple[list[LogitsProcessor], LogprobRecorder | None]:
        """Penalties, then the grammar, then (last) the log probability recorder: the order the batched engine's
        sampler applies them in."""
        processors: list[LogitsProcessor] = []
        if sampling.has_penalties:
            processors.append(PenaltiesProcessor(prompt_length, sampling.presence_penalty, sampling.frequency_penalty))
        if request.grammar is not None:
            grammars = self._grammars()
            try:
                matcher = grammars.matcher(request.grammar)
            except Exception:  # xgrammar's message may quote the grammar
                raise EngineError("grammar_invalid") from None
            processors.append(GrammarProcessor(matcher, grammars.new_bitmask(1), prompt_length))
        recorder = LogprobRecorder(sampling.top_logprobs) if sampling.logprobs else None
        if recorder is not None:
            processors.append(recorder)
        return processors, recorder

    def _grammars(self) -> GrammarCache:
        if self._grammar_cache is None:
            tokenizer, model = self._require_started()
            vocab_size = model.get_output_embeddings().weight.shape[0]  # type: ignore[union-attr]
            eos = model.generation_config.eos_token_id
            stop_ids = [eos] if isinstance(eos, int) else list(eos or [])
            self._grammar_cache = GrammarCache(tokenizer, vocab_size, stop_ids)
        return self._grammar_cache

    def _token_bytes(self) -> list[bytes]:
        if self._token_table is None:
            tokenizer, _ = self._require_started()
            self._token_table = token_bytes(tokenizer, max(len(tokenizer), tokenizer.vocab_size))
        return self._token_table

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextChunk]:
        """One request; its choices (n > 1) one after another, choice i of a seeded request from seed + i."""
        started_at = time.perf_counter()
        tokenizer, _ = self._require_started()
        prompt_ids = chat_prompt_ids(tokenizer, request.messages, request.tools, raw=request.raw_prompt)
        if len(prompt_ids) > self.config.max_input_tokens:
            raise EngineError("prompt_too_long")
        outcomes: list[_Outcome] = []
        for index in range(request.n):
            seed = request.sampling.seed
            sampling = request.sampling if seed is None or index == 0 else replace(request.sampling, seed=seed + index)
            outcome = _Outcome()
            async for chunk in self._generate_choice(request, index, sampling, prompt_ids, outcome):
                yield chunk
            outcomes.append(outcome)
        total_ms = (time.perf_counter() - started_at) * 1000
        first_token_at = outcomes[0].first_token_at
        stats = GenerationStats(
            ttft_ms=(first_token_at - started_at) * 1000 if first_token_at is not None else total_ms,
            total_ms=total_ms,
            input_tokens=len(prompt_ids),
            output_tokens=sum(outcome.output_tokens for outcome in outcomes),
            finish_reason=outcomes[0].finish_reason,
        )
        yield TextChunk(text="", num_tokens=0, stats=stats)

    async def _generate_choice(
        self,
        request: GenerationRequest,
        index: int,
        sampling: SamplingParams,
        prompt_ids: list[int],
        outcome: _Outcome,
    ) -> AsyncIterator[TextChunk]:
        tokenizer, model = self._require_started()
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Item] = asyncio.Queue()

        def post(item: Item) -> None:  # called from the generation thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(items.put_nowait, item)

        processors, recorder = self._processors(request, sampling, len(prompt_ids))
        table = self._token_bytes() if recorder is not None else None
        streamer = LoopStreamer(tokenizer, post, recorder)
        stop = threading.Event()
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self._device)  # [1, S]
        generate_kwargs = self._generate_kwargs(sampling, tokenizer, processors)

        def run() -> None:
            try:
                with torch.inference_mode(), seeded(sampling.seed, self._device):
                    model.generate(  # type: ignore[operator]
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([StopOnEvent(stop)]),
                        **generate_kwargs,
                    )
            except BaseException as exc:
                post(Failed(type(exc).__name__, device_broken(exc)))
            finally:
                post(Finished())

        thread = threading.Thread(target=run, name=_THREAD_NAME, daemon=True)
        thread.start()
        stops = StopMatcher(sampling.stop)
        finished = False
        try:
            while not finished:
                item = await items.get()
                if isinstance(item, Piece):
                    text = stops.push(item.text)
                    if stops.stopped:
                        stop.set()  # a stop string: generation ends after this step; later pieces are dropped
                    logprobs = _logprobs(table, item.logprobs)
                    if text or logprobs:
                        yield TextChunk(text=text, num_tokens=item.num_tokens, index=index, logprobs=logprobs)
                elif isinstance(item, Failed):
                    log_event(logger, "generation_failed", request_id=request.request_id, error_code=item.error_type)
                    failure = EngineDeadError if item.device_broken else EngineError
                    raise failure(f"generation_failed: {item.error_type}")
                else:
                    finished = True
        finally:
            # Consumer closed or cancelled us (or we failed): stop the thread and wait for it, off the loop.
            stop.set()
            if thread.is_alive():
                await asyncio.to_thread(thread.join)
        length = not stops.stopped and streamer.num_output_tokens >= generate_kwargs["max_new_tokens"]
        outcome.finish_reason = "length" if length else "stop"
        outcome.output_tokens = streamer.num_output_tokens
        outcome.first_token_at = streamer.first_token_at
        yield TextChunk(text=stops.flush(), num_tokens=0, index=index, finish_reason=outcome.finish_reason)


@dataclass(slots=True)
class _Outcome:
    """How one choice ended: set once its generation is over."""

    finish_reason: str = "stop"
    output_tokens: int = 0
    first_token_at: float | None = None


def _logprobs(
    table: list[bytes] | None, records: tuple[tuple[int, float, tuple[tuple[int, float], ...]], ...]
) -> tuple[TokenLogprob, ...]:
    if table is None:
        return ()

    def raw(i: int) -> bytes:
        return table[i] if i < len(table) else b""

    return tuple(TokenLogprob(raw(i), lp, tuple((raw(j), v) for j, v in top)) for i, lp, top in records)
