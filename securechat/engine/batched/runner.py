"""Runs scheduled steps on the device: the only module that touches CUDA.

- prefill: eager, the new sequences' prompts flattened into one ``[T]`` batch (varlen, per-sequence attention);
- decode: the running batch padded into static buffers (token, position, slot, length). On a GPU with CUDA
  graphs each bucket size (1, 2, 4, ...) is captured once, all sharing one memory pool, and replayed; padded
  rows write to the scratch KV row. Inside the graph attention reads each sequence's real length from the
  length buffer (the split-K kernel of ``decode_attention.py``), so a step reads no key past a sequence's end.
  On CPU the same buffers feed an eager forward with per-sequence attention;
- sampling per request (``sampler.sample``), then one ``tolist()``: the step's only host sync. A constrained
  sequence's matcher then takes its token; a sequence that asked for log probabilities gets them from the
  scores its token was sampled from.

Choices of one prompt (n > 1) are prefilled once: the leader's prompt goes through the model, its KV rows are
copied to the followers' slots, and the followers sample from the leader's logits with their own generators.

Capture and every replay must happen on the engine's one dedicated thread (``torch.cuda.graph`` state and
inductor's cudagraph trees are thread-local); the caller guarantees it.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any, Final

import torch

from securechat.engine.batched.config import BatchedEngineConfig
from securechat.engine.batched.decode_attention import kernel_available
from securechat.engine.batched.kv_cache import KVCache
from securechat.engine.batched.model import AttentionMetadata, Qwen2Model
from securechat.engine.batched.sampler import LogprobRecord, sample
from securechat.engine.batched.scheduler import ScheduledBatch
from securechat.engine.batched.sequence import Sequence
from securechat.engine.constraints import token_logprobs

TORCH_DTYPES: Final[dict[str, torch.dtype]] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def device_problem(dtype: str, device: torch.device) -> str | None:
    """Why this dtype/device cannot run here (a content-free message saying what to change), or None."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "device cuda requested but CUDA is not available; use device cpu"
    if dtype == "fp16" and device.type != "cuda":
        return "dtype fp16 is not supported on CPU; use dtype fp32 or bf16"
    return None


def free_device_bytes(device: torch.device) -> int | None:
    """Free accelerator memory now, or None on CPU (no limit known)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def bind_thread(device: torch.device) -> None:
    """Make ``device`` current for the calling thread (the engine thread, before load and capture)."""
    # torch.cuda.set_device refuses a device without an index ("cuda", what device "auto" resolves to);
    # such a device means the current one, which needs no binding.
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


class ModelRunner:
    def __init__(
        self,
        model: Qwen2Model,
        kv_cache: KVCache,
        config: BatchedEngineConfig,
        device: torch.device,
        eos_token_ids: Collection[int],
    ) -> None:
        self.model = model
        self.kv_cache = kv_cache
        self.device = device
        self.max_model_len = kv_cache.shape.max_model_len
        self.use_graphs = device.type == "cuda" and config.use_cuda_graphs
        max_rows = max(kv_cache.num_slots, *config.decode_buckets)
        # Static decode inputs, [max_rows] each; rows past the batch keep the padding values.
        self.input_ids = torch.zeros(max_rows, dtype=torch.long, device=device)
        self.positions = torch.zeros(max_rows, dtype=torch.long, device=device)
        self.slots = torch.full((max_rows,), kv_cache.scratch_slot, dtype=torch.long, device=device)
        self.lengths = torch.ones(max_rows, dtype=torch.long, device=device)
        vocab_size = model.lm_head.shape[0]
        self.eos_mask: torch.Tensor | None = None
        if config.disable_eos:
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            mask[[i for i in eos_token_ids if i < vocab_size]] = True
            self.eos_mask = mask.to(device)
        # Buckets past the slot count can never fill; the slot count itself closes the gap above the last one.
        self.buckets = [b for b in config.decode_buckets if b < kv_cache.num_slots] + [kv_cache.num_slots]
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.graph_logits: dict[int, torch.Tensor] = {}  # bucket -> [bucket, V] output of its graph
        # Run the graph body eagerly instead of per-sequence attention: lets CPU tests check what graphs compute.
        self.eager_static_decode = False
        # Static decode attends over real lengths with the split-K kernel where it runs, else over a masked
        # window; read when a graph is captured, so change it only before capture (benchmarks compare both).
        self.split_k_decode = kernel_available(device)
        # Grammar bitmasks, [max_rows, ceil(V / 32)] int32, made with the first constrained sequence.
        self.bitmask: torch.Tensor | None = None
        self.prefilled_tokens = 0  # prompt tokens that went through the model (shared prefills count once)

    def make_generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else random.SystemRandom().getrandbits(63))
        return generator

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> tuple[list[int], list[LogprobRecord | None]]:
        """Each sequence's next token, and its log probabilities where asked for."""
        logits = self._prefill(batch.seqs) if batch.is_prefill else self._decode(batch.seqs)
        tokens, scores = sample(logits, batch.seqs, self.eos_mask, self.bitmask)  # [B] on device
        token_ids = [int(t) for t in tokens.tolist()]  # the step's one host sync
        records: list[LogprobRecord | None] = []
        for i, (seq, token_id) in enumerate(zip(batch.seqs, token_ids, strict=True)):
            if seq.matcher is not None:
                seq.matcher.accept_token(token_id)
            top = seq.top_logprobs
            if top is None:
                records.append(None)
            else:
                logprob, alternatives = token_logprobs(scores[i], token_id, top)
                records.append((logprob, tuple(alternatives)))
        return token_ids, records

    def ensure_bitmask(self, new_bitmask: Any) -> None:
        """Allocate the grammar bitmask once (``new_bitmask(rows)``: the grammar cache's allocator)."""
        if self.bitmask is None:
            self.bitmask = new_bitmask(self.input_ids.shape[0])

    def _host_tensor(self, values: list[int]) -> torch.Tensor:
        # Pinned on CUDA, so the copy into a static buffer is asynchronous.
        return torch.tensor(values, dtype=torch.long, pin_memory=self.device.type == "cuda")

    def _prefill(self, seqs: list[Sequence]) -> torch.Tensor:
        # Followers whose leader is in this batch share its prefill: only the others go through the model.
        in_batch = {seq.seq_id: i for i, seq in enumerate(seqs)}
        computed = [seq for seq in seqs if seq.prefill_from not in in_batch]
        ids: list[int] = []
        positions: list[int] = []
        cu_seqlens = [0]
        for seq in computed:
            ids.extend(seq.prompt_ids)
            positions.extend(range(seq.num_prompt_tokens))
            cu_seqlens.append(len(ids))
        slots_host = [seq.slot for seq in computed if seq.slot is not None]
        assert len(slots_host) == len(computed)
        self.prefilled_tokens += len(ids)
        meta = AttentionMetadata(
            is_prefill=True,
            slots=self._host_tensor(slots_host).to(self.device, non_blocking=True),
            positions=self._host_tensor(positions).to(self.device, non_blocking=True),
            cu_seqlens=cu_seqlens,
            slots_host=slots_host,
        )
        input_ids = self._host_tensor(ids).to(self.device, non_blocking=True)  # [T]
        hidden = self.model(input_ids, meta, self.kv_cache)  # [T, hidden]
        row_of = {seq.seq_id: row for row, seq in enumerate(computed)}
        for seq in seqs:
            if seq.seq_id not in row_of:  # a follower: its leader's prompt KV, in its own slot
                assert seq.prefill_from is not None
                leader = seqs[in_batch[seq.prefill_from]]
                self._copy_prompt_kv(leader, seq)
                row_of[seq.seq_id] = row_of[leader.seq_id]
        ends = [cu_seqlens[row_of[seq.seq_id] + 1] - 1 for seq in seqs]
        last = self._host_tensor(ends).to(self.device, non_blocking=True)  # [B]
        return self.model.compute_logits(hidden[last])  # [B, V]

    def _copy_prompt_kv(self, source: Sequence, target: Sequence) -> None:
        assert source.slot is not None and target.slot is not None
        length = source.num_prompt_tokens
        for k, v in zip(self.kv_cache.k, self.kv_cache.v, strict=True):  # [slots + 1, Hkv, max_len, D] each
            k[target.slot, :, :length].copy_(k[source.slot, :, :length])
            v[target.slot, :, :length].copy_(v[source.slot, :, :length])

    def _decode(self, seqs: list[Sequence]) -> torch.Tensor:
        n = len(seqs)
        lengths_host = [seq.num_tokens for seq in seqs]  # context length once this step's KV is written
        slots_host = [seq.slot for seq in seqs if seq.slot is not None]
        assert len(slots_host) == n
        self.input_ids[:n].copy_(self._host_tensor([seq.last_token for seq in seqs]), non_blocking=True)
        self.positions[:n].copy_(self._host_tensor([length - 1 for length in lengths_host]), non_blocking=True)
        self.slots[:n].copy_(self._host_tensor(slots_host), non_blocking=True)
        self.lengths[:n].copy_(self._host_tensor(lengths_host), non_blocking=True)
        bucket = next((b for b in self.buckets if b >= n), None)
        if bucket is not None and (bucket in self.graphs or self.eager_static_decode):
            self._reset_padding(n, bucket)
            if bucket in self.graphs:
                self.graphs[bucket].replay()
                return self.graph_logits[bucket]  # [bucket, V]; rows past n are padding
            return self._static_forward(bucket)
        if self.device.type == "cuda":  # eager, no graph for this size: real lengths (kernel), else masked window
            meta = self._decode_metadata(n, window=max(lengths_host))
        else:
            meta = AttentionMetadata(
                is_prefill=False,
                slots=self.slots[:n],
                positions=self.positions[:n],
                slots_host=slots_host,
                lengths_host=lengths_host,
            )
        return self.model.compute_logits(self.model(self.input_ids[:n], meta, self.kv_cache))

    def _decode_metadata(self, n: int, window: int) -> AttentionMetadata:
        return AttentionMetadata(
            is_prefill=False,
            slots=self.slots[:n],
            positions=self.positions[:n],
            lengths=self.lengths[:n],
            split_k=self.split_k_decode,
            window=window,
        )

    def _static_forward(self, bucket: int) -> torch.Tensor:
        """The body each CUDA graph captures: ``bucket`` rows of the static buffers; attention over each row's
        real length (or, without the kernel, masked over the whole static window). Returns [bucket, V] fp32
        logits."""
        meta = self._decode_metadata(bucket, window=self.max_model_len)
        return self.model.compute_logits(self.model(self.input_ids[:bucket], meta, self.kv_cache))

    def _reset_padding(self, start: int, end: int) -> None:
        # Padded rows: token 0 at position 0 of the scratch slot, attending to that one key.
        if end > start:
            self.input_ids[start:end].zero_()
            self.positions[start:end].zero_()
            self.slots[start:end].fill_(self.kv_cache.scratch_slot)
            self.lengths[start:end].fill_(1)

    @torch.inference_mode()
    def capture_cuda_graphs(self) -> None:
        """Capture one decode graph per bucket, largest first, sharing one memory pool (engine thread only)."""
        if not self.use_graphs:
            return
        self._reset_padding(0, self.input_ids.shape[0])
        pool: Any = None  # the graphs' shared memory pool handle
        for bucket in sorted(self.buckets, reverse=True):
            # Warm-up outside capture: lazy initialisation (cuBLAS handles, workspaces) must not be captured.
            self._static_forward(bucket)
            torch.cuda.synchronize(self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                logits = self._static_forward(bucket)
            pool = graph.pool()
            self.graphs[bucket] = graph
            self.graph_logits[bucket] = logits
        torch.cuda.synchronize(self.device)
