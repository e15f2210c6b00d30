"""The batched engine on CPU with the tiny model (fp32): same tokens as ``model.generate``, alone and batched."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.cuda._utils import _get_device_index
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from securechat.engine.base import (
    ChatMessage,
    EngineDeadError,
    EngineError,
    GenerationRequest,
    SamplingParams,
    TextChunk,
)
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.engine.batched import model as model_module
from securechat.engine.batched.core import EngineCore, load_core
from securechat.engine.batched.decode_attention import split_k_attention
from securechat.engine.batched.detokenizer import IncrementalDetokenizer
from securechat.engine.batched.engine_process import EngineProcess
from securechat.engine.batched.engine_thread import EngineThread
from securechat.engine.batched.kv_cache import KVCache
from securechat.engine.batched.model import AttentionMetadata, Qwen2Model
from securechat.engine.batched.runner import bind_thread
from securechat.engine.batched.sequence import Sequence
from securechat.tiny_model import TINY_MODEL_NAME

PROMPTS = (
    "Name three colours, please.",
    "How do I bake bread?",
    "def add(a: int, b: int) -> int:",
    "Qu'est-ce que c'est? 👋 héllo",
    "The train to the city leaves at 7:45",
    "x",
)
MAX_NEW = (5, 9, 13, 17, 21, 25)  # different budgets: sequences leave the batch at different steps
CPU = torch.device("cpu")


def _config(**overrides: Any) -> BatchedEngineConfig:
    fields: dict[str, Any] = {
        "model": TINY_MODEL_NAME,
        "device": "cpu",
        "max_batch_size": 8,
        "max_input_tokens": 256,
        "max_new_tokens": 64,
    }
    return BatchedEngineConfig(**{**fields, **overrides})


def _messages(text: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage("system", "You are terse."), ChatMessage("user", text))


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def hf_model(tiny_model_path: Path) -> PreTrainedModel:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    model.eval()
    return model


@pytest.fixture(scope="module")
def prompt_ids(tokenizer: Any) -> list[list[int]]:
    def ids(text: str) -> list[int]:
        conversation = [{"role": m.role, "content": m.content} for m in _messages(text)]
        return list(tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_dict=False))

    return [ids(text) for text in PROMPTS]


@pytest.fixture(scope="module")
def core(tiny_model_path: Path) -> EngineCore:
    return load_core(_config(), CPU)


@pytest.fixture(scope="module", params=["thread", "process"])
def engine(tiny_model_path: Path, request: pytest.FixtureRequest) -> Iterator[BatchedEngine]:
    """Both owners of the core: the same answers whether the model steps in a thread or its own process."""
    engine = BatchedEngine(_config(max_batch_size=4, core=request.param))
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


@pytest.fixture
def engine_process(tiny_model_path: Path) -> Iterator[BatchedEngine]:
    """A process engine of its own (tests that kill its child)."""
    engine = BatchedEngine(_config(max_batch_size=2, core="process"))
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


def _reference(model: PreTrainedModel, ids: list[int], max_new_tokens: int, sampling: SamplingParams) -> list[int]:
    """``model.generate`` on one prompt, with the HF engine's reading of SamplingParams."""
    kwargs: dict[str, Any] = {"do_sample": False}
    if sampling.temperature > 0:
        assert sampling.seed is not None
        torch.manual_seed(sampling.seed)
        kwargs = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(  # type: ignore[operator]
            input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens, **kwargs
        )
    return [int(t) for t in out[0, len(ids) :]]


def _drain(core: EngineCore, seqs: list[Sequence], late: Sequence | None = None, join_at: int = 3) -> None:
    for seq in seqs:
        core.add(seq)
    steps = 0
    while core.has_work or (late is not None and late.status.name == "WAITING" and steps <= join_at):
        if late is not None and steps == join_at:
            core.add(late)
        assert len(core.scheduler.running) <= core.scheduler.max_batch_size
        core.step()
        steps += 1
    assert core.num_free_slots == core.num_slots


def _sampling(i: int, sampled: bool) -> SamplingParams:
    if sampled:
        return SamplingParams(max_new_tokens=MAX_NEW[i], temperature=0.9, top_p=0.9, seed=100 + i)
    return SamplingParams(max_new_tokens=MAX_NEW[i])


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded"])
def test_tokens_match_generate_alone_and_in_one_batch(
    core: EngineCore, hf_model: PreTrainedModel, prompt_ids: list[list[int]], sampled: bool
) -> None:
    params = [_sampling(i, sampled) for i in range(len(PROMPTS))]
    expected = [_reference(hf_model, ids, p.max_new_tokens, p) for ids, p in zip(prompt_ids, params, strict=True)]

    def seq(i: int) -> Sequence:
        return Sequence(list(prompt_ids[i]), params[i], params[i].max_new_tokens)

    for i in range(len(PROMPTS)):  # alone
        alone = seq(i)
        _drain(core, [alone])
        assert alone.output_ids == expected[i]
    batch = [seq(i) for i in range(len(PROMPTS) - 1)]
    late = seq(len(PROMPTS) - 1)  # joins after 3 decode steps, while the others run
    _drain(core, batch, late=late)
    assert [s.output_ids for s in [*batch, late]] == expected


def test_static_padded_decode_matches_generate(
    tiny_model_path: Path, hf_model: PreTrainedModel, prompt_ids: list[list[int]]
) -> None:
    # What each CUDA graph captures without the kernel (bucket-padded static buffers, masked window, scratch
    # slot), run eagerly.
    params = [_sampling(i, sampled=i % 2 == 0) for i in range(len(PROMPTS))]
    caches = []
    for eager_static_decode in (True, False):
        core = load_core(_config(max_batch_size=8, decode_buckets=(1, 2, 4, 8)), CPU)
        core.runner.eager_static_decode = eager_static_decode
        core.runner.split_k_decode = False  # the fallback body: gather the window and mask it
        seqs = [Sequence(list(ids), p, p.max_new_tokens) for ids, p in zip(prompt_ids, params, strict=True)]
        _drain(core, seqs[:-1], late=seqs[-1])  # batch sizes 5 -> 6 -> ... -> 1 cross the buckets 8, 4, 2, 1
        for seq, ids, p in zip(seqs, prompt_ids, params, strict=True):
            assert seq.output_ids == _reference(hf_model, ids, p.max_new_tokens, p)
        caches.append(core.runner.kv_cache)
    # Padded rows wrote only to the scratch row: every real slot holds what per-sequence decoding wrote.
    static, eager = caches
    for layer in range(static.shape.num_layers):
        torch.testing.assert_close(static.k[layer][: static.num_slots], eager.k[layer][: eager.num_slots])
        torch.testing.assert_close(static.v[layer][: static.num_slots], eager.v[layer][: eager.num_slots])


@pytest.mark.skipif(torch.cuda.is_available(), reason="Triton interprets only on CPU-only hosts (conftest.py)")
def test_kernel_static_decode_matches_per_sequence_decode(
    tiny_model_path: Path, prompt_ids: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CUDA-graph body with the split-K kernel (run by Triton's interpreter here) against the eager
    # per-sequence path, greedy, token for token: alone, then three rows padded to bucket 4 and a late joiner.
    plan = ((1, 9), (0, 5), (2, 12), (3, 7), (5, 8))  # (prompt, budget)

    def run(static: bool) -> list[list[int]]:
        core = load_core(_config(max_batch_size=4, decode_buckets=(1, 2, 4)), CPU)
        assert core.runner.split_k_decode  # TRITON_INTERPRET=1 (conftest.py): the kernel runs on the CPU
        core.runner.eager_static_decode = static
        seqs = [Sequence(list(prompt_ids[i]), SamplingParams(max_new_tokens=n), n) for i, n in plan]
        _drain(core, seqs[:1])
        _drain(core, seqs[1:4], late=seqs[4], join_at=2)
        return [seq.output_ids for seq in seqs]

    rows: list[int] = []

    def kernel(*args: Any, **kwargs: Any) -> torch.Tensor:
        rows.append(args[0].shape[0])  # q: [bucket, H, D]
        return split_k_attention(*args, **kwargs)

    def no_window(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise AssertionError("the static path gathered the window instead of running the kernel")

    monkeypatch.setattr(model_module, "split_k_attention", kernel)
    monkeypatch.setattr(model_module, "masked_window_attention", no_window)
    expected = run(static=False)
    assert rows == []  # per-sequence decode never touches the kernel
    assert run(static=True) == expected
    assert set(rows) == {1, 2, 4}  # every bucket ran, padded rows included


def test_bind_thread_accepts_cuda_without_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch's own index check, without CUDA: set_device(torch.device("cuda")) raises ValueError
    bound: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: bound.append(_get_device_index(device)))
    for device in ("cuda", "cuda:1", "cpu"):
        bind_thread(torch.device(device))
    assert bound == [1]


def test_admission_is_bounded_by_batch_size(tiny_model_path: Path, prompt_ids: list[list[int]]) -> None:
    small = load_core(_config(max_batch_size=2), CPU)
    seqs = [Sequence(list(ids), SamplingParams(max_new_tokens=6), 6) for ids in prompt_ids]
    for seq in seqs:
        small.add(seq)
    peak = 0
    while small.has_work:
        small.step()
        peak = max(peak, len(small.scheduler.running))
        assert small.num_free_slots == small.num_slots - len(small.scheduler.running)
    assert peak == 2
    assert all(seq.status.name == "FINISHED" and 1 <= len(seq.output_ids) <= 6 for seq in seqs)


def test_forward_logits_match_transformers(hf_model: PreTrainedModel, prompt_ids: list[list[int]]) -> None:
    ids = prompt_ids[1] + list(range(40, 46))  # prompt, then six "generated" tokens fed one by one
    num_prompt = len(prompt_ids[1])
    with torch.inference_mode():
        expected = hf_model(torch.tensor([ids])).logits[0].float()  # type: ignore[operator]  # [S, V]
        model = Qwen2Model(hf_model, torch.float32, CPU, max_model_len=128)
        for per_sequence in (True, False):
            cache = KVCache(model.kv_shape, num_slots=2, dtype=torch.float32, device=CPU)
            slot = torch.tensor([1])
            prefill = AttentionMetadata(
                is_prefill=True,
                slots=slot,
                positions=torch.arange(num_prompt),
                cu_seqlens=[0, num_prompt],
                slots_host=[1],
            )
            hidden = model(torch.tensor(ids[:num_prompt]), prefill, cache)
            torch.testing.assert_close(model.compute_logits(hidden[-1:]), expected[num_prompt - 1 : num_prompt])
            for pos in range(num_prompt, len(ids)):
                decode = AttentionMetadata(is_prefill=False, slots=slot, positions=torch.tensor([pos]))
                if per_sequence:
                    decode.slots_host, decode.lengths_host = [1], [pos + 1]
                else:
                    decode.lengths, decode.window = torch.tensor([pos + 1]), 128
                logits = model.compute_logits(model(torch.tensor([ids[pos]]), decode, cache))
                torch.testing.assert_close(logits, expected[pos : pos + 1], rtol=1e-4, atol=1e-5)


def _request(text: str, request_id: str = "req-1", **sampling: Any) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, messages=_messages(text), sampling=SamplingParams(**sampling))


async def _collect(chunks: AsyncIterator[TextChunk]) -> list[TextChunk]:
    return [chunk async for chunk in chunks]


def test_concurrent_streams_match_generate_with_exact_stats(
    engine: BatchedEngine, hf_model: PreTrainedModel, tokenizer: Any, prompt_ids: list[list[int]]
) -> None:
    # Six requests, four slots: two wait and join as others leave; odd ones sample (varied text), even greedy.
    params = [_sampling(i, sampled=i % 2 == 1) for i in range(len(PROMPTS))]

    async def run_all() -> list[list[TextChunk]]:
        requests = [
            _request(text, f"req-{i}", **{f: getattr(p, f) for f in ("max_new_tokens", "temperature", "top_p", "seed")})
            for i, (text, p) in enumerate(zip(PROMPTS, params, strict=True))
        ]
        return await asyncio.gather(*(_collect(engine.generate(r)) for r in requests))

    started = time.perf_counter()
    results = asyncio.run(run_all())
    elapsed_ms = (time.perf_counter() - started) * 1000
    for i, chunks in enumerate(results):
        expected_ids = _reference(hf_model, prompt_ids[i], params[i].max_new_tokens, params[i])
        assert "".join(c.text for c in chunks) == tokenizer.decode(expected_ids, skip_special_tokens=True)
        assert all(c.stats is None and c.text for c in chunks[:-1])
        stats = chunks[-1].stats
        assert stats is not None and chunks[-1].text == "" and chunks[-1].num_tokens == 0
        assert stats.input_tokens == len(prompt_ids[i])
        assert stats.output_tokens == len(expected_ids)
        assert sum(c.num_tokens for c in chunks) <= stats.output_tokens
        assert 0 < stats.ttft_ms <= stats.total_ms <= elapsed_ms
    assert engine.num_free_slots == engine.num_slots == 4


def test_seeded_sampling_does_not_depend_on_batch(engine: BatchedEngine) -> None:
    def request(i: int, seed: int) -> GenerationRequest:
        return _request(PROMPTS[0], f"req-{i}", max_new_tokens=24, temperature=1.0, seed=seed)

    async def run() -> tuple[str, list[str]]:
        alone = await _collect(engine.generate(request(0, 7)))
        batched = await asyncio.gather(*(_collect(engine.generate(request(i, 7 + i % 2))) for i in range(4)))
        return "".join(c.text for c in alone), ["".join(c.text for c in chunks) for chunks in batched]

    alone, batched = asyncio.run(run())
    assert batched[0] == batched[2] == alone
    assert batched[1] == batched[3] != alone


def test_closing_the_stream_frees_its_slot(engine: BatchedEngine) -> None:
    async def run() -> str:
        stream = engine.generate(_request(PROMPTS[0], max_new_tokens=64))
        assert isinstance(stream, AsyncIterator)
        first = await anext(stream)
        assert first.stats is None
        await stream.aclose()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while engine.num_free_slots != engine.num_slots:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        following = await _collect(engine.generate(_request(PROMPTS[1], max_new_tokens=4)))
        stats = following[-1].stats
        assert stats is not None
        return str(stats.output_tokens)

    assert asyncio.run(run()) == "4"
    assert engine.num_free_slots == engine.num_slots


def test_prompt_too_long(engine: BatchedEngine) -> None:
    with pytest.raises(EngineError, match=r"^prompt_too_long$"):
        asyncio.run(_collect(engine.generate(_request("word " * 400))))


def test_engine_thread_failure_fails_requests_and_kills_engine(tiny_model_path: Path) -> None:
    doomed = BatchedEngine(_config(max_batch_size=2, core="thread"))

    async def run() -> None:
        await doomed.start()
        client = doomed.core_client
        assert isinstance(client, EngineThread) and client.core is not None

        def explode(*args: Any) -> list[int]:
            raise RuntimeError("boom")

        client.core.runner.run = explode  # type: ignore[method-assign, assignment]
        with pytest.raises(EngineDeadError):
            await _collect(doomed.generate(_request(PROMPTS[0], max_new_tokens=4)))
        with pytest.raises(EngineDeadError):
            await _collect(doomed.generate(_request(PROMPTS[1], max_new_tokens=4)))
        await doomed.close()

    asyncio.run(run())


def test_the_engine_process_dying_fails_requests_and_kills_engine(engine_process: BatchedEngine) -> None:
    """The child that steps the model is killed mid-answer: the answer and every later request fail at once."""
    client = engine_process.core_client
    assert isinstance(client, EngineProcess) and client.pid is not None

    async def run() -> None:
        stream = engine_process.generate(_request(PROMPTS[0], max_new_tokens=64))
        await anext(stream)
        os.kill(client.pid, signal.SIGKILL)  # type: ignore[arg-type]
        with pytest.raises(EngineDeadError):
            await _collect(stream)
        with pytest.raises(EngineDeadError):
            await _collect(engine_process.generate(_request(PROMPTS[1], max_new_tokens=4)))

    asyncio.run(asyncio.wait_for(run(), timeout=30))


def test_the_engine_process_exits_when_its_replica_dies(tiny_model_path: Path, tmp_path: Path) -> None:
    """A replica killed without any clean-up must not leave its model process behind."""
    script = tmp_path / "replica.py"
    script.write_text(
        "import asyncio, sys\n"
        "from securechat.engine.batched import BatchedEngine, BatchedEngineConfig\n"
        "async def main():\n"
        "    engine = BatchedEngine(BatchedEngineConfig(model=sys.argv[1], device='cpu', max_batch_size=1,"
        " max_input_tokens=64, max_new_tokens=8))\n"
        "    await engine.start()\n"
        "    print(engine.core_client.pid, flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "asyncio.run(main())\n"
    )
    replica = subprocess.Popen(
        [sys.executable, str(script), TINY_MODEL_NAME], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert replica.stdout is not None
        child_pid = int(replica.stdout.readline())
        assert _alive(child_pid)
    finally:
        replica.kill()
        replica.wait()
    deadline = time.monotonic() + 20
    while _alive(child_pid):
        assert time.monotonic() < deadline, "the engine process outlived its replica"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"  # a zombie has exited, only its parent has not reaped it
    except FileNotFoundError:
        return False


def test_detokenizer_never_splits_a_character(tokenizer: Any) -> None:
    text = "héllo 👋 wörld, 数字 and ümlauts 🎉!"
    ids = tokenizer.encode(text, add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(tokenizer)
    pieces = [detokenizer.push([token_id]) for token_id in ids]
    pieces.append(detokenizer.flush())
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert len(ids) > len([p for p in pieces if p])  # multi-byte characters were held back, not emitted broken
