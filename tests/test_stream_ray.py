"""What the host sees of an answer on the running app: frames of one size, whatever the text; the client still
recovers exactly the engine's text, through the SDK, the gateway's SSE path and the local proxy alike."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from deployments.local import LocalApp
from securechat.config import AppSettings
from securechat.engine.base import SamplingParams
from securechat.framing import decode_frames
from securechat.response import read_completion
from securechat.stream import wire_frame_sizes
from tests.ray_harness import APP_ARGS, BATCHED_REGION
from tests.test_app_ray import directory, local_hf_text, post_envelope, seal_for

pytestmark = pytest.mark.ray

FRAME_BYTES = AppSettings.model_validate(APP_ARGS).stream.frame_bytes
DATA_SIZE, FINAL_SIZE = wire_frame_sizes(FRAME_BYTES)


def _answer(ray_app: LocalApp, prompt: str, sampling: SamplingParams) -> tuple[list[int], str, dict[str, Any]]:
    sealed = seal_for(directory(ray_app, BATCHED_REGION), prompt, BATCHED_REGION, sampling)
    response = post_envelope(ray_app, sealed, BATCHED_REGION)
    assert response.status_code == 200
    completion = read_completion([response.content], sealed)
    return [len(frame) for frame in decode_frames(response.content)], completion.text, completion.metrics


def test_answers_of_equal_token_count_but_different_bytes_look_the_same_on_the_wire(ray_app: LocalApp) -> None:
    """Token byte lengths are what the keylogging attack reads (Weiss et al. 2024); the host must not see them."""
    sampling = SamplingParams(max_new_tokens=16, temperature=1.0, seed=5)
    sizes_a, text_a, metrics_a = _answer(ray_app, "Tell me about rivers.", sampling)
    sizes_b, text_b, metrics_b = _answer(ray_app, "Write a haiku on snow.", sampling)
    assert metrics_a["output_tokens"] == metrics_b["output_tokens"] == 16
    assert len(text_a.encode()) != len(text_b.encode())  # the precondition: the answers' bytes differ
    assert sizes_a == sizes_b
    assert sizes_a[0] == 33 and set(sizes_a[1:-1]) == {DATA_SIZE} and sizes_a[-1] == FINAL_SIZE


def test_a_long_answer_is_cut_into_frames_and_recovered_exactly(ray_app: LocalApp, tiny_model_path: Any) -> None:
    """Text longer than a frame continues in the next one, never cut inside a character, with no padding in it."""
    sampling = SamplingParams(max_new_tokens=200, temperature=1.0, seed=7)
    prompt = "Say something long."
    sizes, text, _ = _answer(ray_app, prompt, sampling)
    assert len(text.encode()) > FRAME_BYTES  # spans several data frames
    assert any(len(ch.encode()) > 1 for ch in text)  # multi-byte characters crossed frame boundaries
    assert len(sizes) > 4 and set(sizes[1:-1]) == {DATA_SIZE}
    # Exactly the model's text (the region runs with EOS off), nothing added.
    assert text == local_hf_text(tiny_model_path, prompt, sampling, disable_eos=True)
    assert "\x00" not in text


def test_the_sse_path_streams_the_same_text_as_a_sealed_request(ray_app: LocalApp) -> None:
    """The gateway-sealed SSE path (trusts the TLS edge) decodes the same padded frames into the same text."""
    sampling = SamplingParams(max_new_tokens=24, temperature=0.8, seed=3)
    prompt = "Describe a market."
    _, sealed_text, _ = _answer(ray_app, prompt, sampling)
    body = {
        "tenant_id": "tenant1",
        "prompt": prompt,
        "mode": "plain",
        "region": BATCHED_REGION,
        "max_new_tokens": 24,
        "temperature": 0.8,
        "seed": 3,
    }
    response = httpx.post(f"{ray_app.base_url}/infer", json=body, headers={"Accept": "text/event-stream"}, timeout=60)
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    assert [e[0] for e in events][-1] == "event: done"
    sse_text = "".join(json.loads(e[1].removeprefix("data: "))["text"] for e in events if e[0] == "event: token")
    assert sse_text == sealed_text
