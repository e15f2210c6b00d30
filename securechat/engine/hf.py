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
from dataclasses import dataclass
from typing import Any, Final, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
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
    TextChunk,
)
from securechat.engine.chat_template import chat_prompt_ids
from securechat.engine.device import resolve_device
from securechat.engine.hf_thread import Failed, Finished, Item, LoopStreamer, Piece, StopOnEvent, device_broken, seeded
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

    def __init__(self, config: HFEngineConfig) -> None:
        self.config = config
        self._device = resolve_device(config.device)
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None

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
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _require_started(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        if self._tokenizer is None or self._model is None:
            raise EngineError("engine_not_started")
        return self._tokenizer, self._model

    def _prompt_ids(self, messages: tuple[ChatMessage, ...]) -> list[int]:
        tokenizer, _ = self._require_started()
        return chat_prompt_ids(tokenizer, messages)

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return len(self._prompt_ids(messages))

    def _generate_kwargs(
        self, request: GenerationRequest, tokenizer: PreTrainedTokenizerBase, prompt_length: int
    ) -> dict[str, Any]:
        sampling = request.sampling
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
        if sampling.has_penalties:
            penalties = PenaltiesProcessor(prompt_length, sampling.presence_penalty, sampling.frequency_penalty)
            kwargs["logits_processor"] = LogitsProcessorList([penalties])
        if self.config.disable_eos:
            kwargs["min_new_tokens"] = max_new_tokens  # masks every EOS id until the budget is spent
        return kwargs

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextChunk]:
        started_at = time.perf_counter()
        tokenizer, model = self._require_started()
        prompt_ids = self._prompt_ids(request.messages)
        if len(prompt_ids) > self.config.max_input_tokens:
            raise EngineError("prompt_too_long")

        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Item] = asyncio.Queue()

        def post(item: Item) -> None:  # called from the generation thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(items.put_nowait, item)

        streamer = LoopStreamer(tokenizer, post)
        stop = threading.Event()
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self._device)  # [1, S]
        generate_kwargs = self._generate_kwargs(request, tokenizer, len(prompt_ids))

        def run() -> None:
            try:
                with torch.inference_mode(), seeded(request.sampling.seed, self._device):
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
        stops = StopMatcher(request.sampling.stop)
        finished = False
        try:
            while not finished:
                item = await items.get()
                if isinstance(item, Piece):
                    text = stops.push(item.text)
                    if stops.stopped:
                        stop.set()  # a stop string: generation ends after this step; later pieces are dropped
                    if text:
                        yield TextChunk(text=text, num_tokens=item.num_tokens)
                elif isinstance(item, Failed):
                    log_event(logger, "generation_failed", request_id=request.request_id, error_code=item.error_type)
                    failure = EngineDeadError if item.device_broken else EngineError
                    raise failure(f"generation_failed: {item.error_type}")
                else:
                    finished = True
            if held := stops.flush():
                yield TextChunk(text=held, num_tokens=0)
        finally:
            # Consumer closed or cancelled us (or we failed): stop the thread and wait for it, off the loop.
            stop.set()
            if thread.is_alive():
                await asyncio.to_thread(thread.join)

        total_ms = (time.perf_counter() - started_at) * 1000
        first_token_at = streamer.first_token_at
        ttft_ms = (first_token_at - started_at) * 1000 if first_token_at is not None else total_ms
        stats = GenerationStats(
            ttft_ms=ttft_ms,
            total_ms=total_ms,
            input_tokens=len(prompt_ids),
            output_tokens=streamer.num_output_tokens,
            finish_reason="length"
            if not stops.stopped and streamer.num_output_tokens >= generate_kwargs["max_new_tokens"]
            else "stop",
        )
        yield TextChunk(text="", num_tokens=0, stats=stats)
