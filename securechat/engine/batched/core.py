"""The synchronous step loop: scheduler + runner, driven by one thread (no asyncio, no tokenizer).

``step()`` runs one scheduled step and returns the sequences that got a token; tests can drive it directly, so
mid-batch joins and departures are deterministic there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from securechat.engine.batched.config import BatchedEngineConfig
from securechat.engine.batched.kv_cache import KVCache, plan_num_slots
from securechat.engine.batched.model import Qwen2Model
from securechat.engine.batched.runner import TORCH_DTYPES, ModelRunner, bind_thread, free_device_bytes
from securechat.engine.batched.sampler import LogprobRecord
from securechat.engine.batched.scheduler import Scheduler
from securechat.engine.batched.sequence import Sequence
from securechat.engine.batched.slot_pool import SlotPool
from securechat.engine.constraints import GrammarCache
from securechat.tiny_model import resolve_model_path


@dataclass(frozen=True, slots=True)
class StepOutput:
    seq: Sequence
    token_id: int
    finished: bool
    logprobs: LogprobRecord | None = None


class GrammarRejected(Exception):
    """A sequence's grammar does not compile: that request fails, the core goes on (content-free)."""


class EngineCore:
    def __init__(
        self, scheduler: Scheduler, runner: ModelRunner, grammars: Callable[[], GrammarCache] | None = None
    ) -> None:
        """``grammars`` makes the grammar cache, on the first constrained sequence (it needs the tokenizer)."""
        self.scheduler = scheduler
        self.runner = runner
        self._make_grammars = grammars
        self._grammars: GrammarCache | None = None

    @property
    def grammars(self) -> GrammarCache:
        if self._grammars is None:
            if self._make_grammars is None:
                raise GrammarRejected("grammar_unavailable")
            self._grammars = self._make_grammars()
            self.runner.ensure_bitmask(self._grammars.new_bitmask)
        return self._grammars

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    @property
    def num_free_slots(self) -> int:
        return self.scheduler.slots.num_free

    @property
    def num_slots(self) -> int:
        return self.scheduler.slots.num_slots

    def add(self, seq: Sequence) -> None:
        """Queue ``seq``; GrammarRejected (and nothing queued) when its grammar does not compile."""
        if seq.grammar is not None and seq.matcher is None:
            try:
                seq.matcher = self.grammars.matcher(seq.grammar)
            except GrammarRejected:
                raise
            except Exception:  # xgrammar's message may quote the grammar: only that it failed goes on
                raise GrammarRejected("grammar_invalid") from None
        if not seq.is_greedy and seq.generator is None:
            seq.generator = self.runner.make_generator(seq.sampling.seed)
        self.scheduler.add(seq)

    def abort(self, seq_id: int) -> Sequence | None:
        return self.scheduler.abort(seq_id)

    def step(self) -> list[StepOutput]:
        batch = self.scheduler.schedule()
        if batch is None:
            return []
        token_ids, records = self.runner.run(batch)
        now = time.perf_counter()
        for seq in batch.seqs:
            if seq.first_token_at is None:
                seq.first_token_at = now
        finished = {seq.seq_id for seq in self.scheduler.postprocess(batch.seqs, token_ids)}
        return [
            StepOutput(seq, token_id, seq.seq_id in finished, record)
            for seq, token_id, record in zip(batch.seqs, token_ids, records, strict=True)
        ]


def eos_token_ids(model: object) -> list[int]:
    """The ids ``model.generate`` stops on: its generation_config's (an int or a list)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    if eos is None:
        return []
    return [int(eos)] if isinstance(eos, int) else [int(i) for i in eos]


def load_core(config: BatchedEngineConfig, device: torch.device) -> EngineCore:
    """Load weights, size and allocate the KV cache, capture CUDA graphs: call where the core will step (its
    thread, or its process)."""
    bind_thread(device)
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    dtype = TORCH_DTYPES[config.dtype]
    # Load on CPU and keep only the fused copies on the device, so the device never holds two sets of weights.
    hf_model = AutoModelForCausalLM.from_pretrained(resolve_model_path(config.model), dtype=dtype)
    if hf_model.config.model_type != "qwen2":
        raise ValueError("the batched engine runs Qwen2-architecture models only")
    model = Qwen2Model(hf_model, dtype, device, config.context_len)
    stop_ids = eos_token_ids(hf_model)
    del hf_model
    num_slots = plan_num_slots(
        model.kv_shape,
        dtype,
        max_batch_size=config.max_batch_size,
        kv_cache_tokens=config.kv_cache_tokens,
        free_bytes=_kv_budget_bytes(config, device),
    )
    kv_cache = KVCache(model.kv_shape, num_slots, dtype, device)
    runner = ModelRunner(model, kv_cache, config, device, stop_ids)
    runner.capture_cuda_graphs()
    scheduler = Scheduler(config.max_batch_size, SlotPool(num_slots), stop_ids, config.disable_eos)
    vocab_size = model.lm_head.shape[0]

    def grammars() -> GrammarCache:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.model))
        return GrammarCache(tokenizer, vocab_size, stop_ids)

    return EngineCore(scheduler, runner, grammars)


def _kv_budget_bytes(config: BatchedEngineConfig, device: torch.device) -> int | None:
    free = free_device_bytes(device)
    return None if free is None else int(free * config.gpu_memory_utilization)
