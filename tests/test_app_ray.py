"""The deployed app through its real interfaces: HTTP on a free port, Ray replicas, Ray's metrics endpoint."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from deployments.local import LocalApp
from securechat.config import AppSettings
from securechat.engine.base import SamplingParams
from securechat.envelope import SealedRequest, seal_request
from securechat.framing import decode_frames
from securechat.keys import RecipientKey
from securechat.request_body import RequestBody
from securechat.response import read_completion
from securechat.stream import wire_frame_sizes
from tests.ray_harness import APP_ARGS, BATCHED_REGION, FAULT_CHUNKS, FAULT_REGION, MAIN_REGION, kill_worker

pytestmark = pytest.mark.ray

PROTOTYPE_REQUEST = {
    "tenant_id": "tenant1",
    "prompt": "You are an expert ML systems engineer. Explain how transformer-based LLMs work and how to optimize "
    "their inference performance.",
    "mode": "plain",
    "region": "us-west-1",
}


def keys_of(workers: list[dict[str, Any]]) -> list[RecipientKey]:
    return [RecipientKey.from_dict(key) for worker in workers for key in worker["keys"]]


def directory(app: LocalApp, region: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{app.base_url}/v1/keys", params={"region": region}, timeout=10).json()
    workers: list[dict[str, Any]] = body["workers"]
    return workers


def seal_for(workers: list[dict[str, Any]], prompt: str, region: str, sampling: SamplingParams) -> SealedRequest:
    body = RequestBody.from_prompt(prompt, sampling).to_bytes()
    return seal_request(
        body,
        request_id=uuid.uuid4().hex,
        tenant_id="tenant1",
        mode="plain",
        region=region,
        recipients=keys_of(workers),
    )


def post_envelope(app: LocalApp, sealed: SealedRequest, region: str) -> httpx.Response:
    payload = {"tenant_id": "tenant1", "mode": "plain", "region": region, "envelope": sealed.envelope.to_dict()}
    return httpx.post(f"{app.base_url}/infer", json=payload, timeout=60)


def local_hf_text(model_path: Any, prompt: str, sampling: SamplingParams, *, disable_eos: bool = False) -> str:
    """What the transformers model itself answers, run here with the hf engine."""
    from securechat.engine.base import ChatMessage, GenerationRequest
    from securechat.engine.hf import HFEngine, HFEngineConfig

    async def run() -> str:
        config = HFEngineConfig(
            model=str(model_path), dtype="fp32", device="cpu", max_input_tokens=2048, disable_eos=disable_eos
        )
        engine = HFEngine(config)
        await engine.start()
        request = GenerationRequest("local", (ChatMessage("user", prompt),), sampling)
        return "".join([chunk.text async for chunk in engine.generate(request)])

    return asyncio.run(run())


def test_sealed_request_decrypts_to_the_models_output(ray_app: LocalApp, tiny_model_path: Any) -> None:
    sampling = SamplingParams(max_new_tokens=12, temperature=0.9, seed=11)
    sealed = seal_for(directory(ray_app, MAIN_REGION), "Tell me a story.", MAIN_REGION, sampling)
    response = post_envelope(ray_app, sealed, MAIN_REGION)
    assert response.status_code == 200
    completion = read_completion([response.content], sealed)
    assert completion.metrics["output_tokens"] == 12
    assert completion.text == local_hf_text(tiny_model_path, "Tell me a story.", sampling)
    assert completion.text.encode() not in response.content


def test_batched_engine_serves_concurrent_sealed_requests(ray_app: LocalApp, tiny_model_path: Any) -> None:
    """Six requests at once share one batched worker; each answer equals the model's own for its seed."""
    prompts = [f"Question number {i}?" for i in range(6)]
    samplings = [SamplingParams(max_new_tokens=8 + i, temperature=0.8, seed=100 + i) for i in range(6)]
    workers = directory(ray_app, BATCHED_REGION)
    sealed = [seal_for(workers, p, BATCHED_REGION, s) for p, s in zip(prompts, samplings, strict=True)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda s: post_envelope(ray_app, s, BATCHED_REGION), sealed))
    for request, response, prompt, sampling in zip(sealed, responses, prompts, samplings, strict=True):
        assert response.status_code == 200
        completion = read_completion([response.content], request)
        assert completion.metrics["output_tokens"] == sampling.max_new_tokens
        assert completion.text == local_hf_text(tiny_model_path, prompt, sampling)


def test_prototype_curl_request_returns_well_formed_frames(ray_app: LocalApp) -> None:
    response = httpx.post(f"{ray_app.base_url}/infer", json=PROTOTYPE_REQUEST, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    start, *data, final = decode_frames(response.content)
    assert start[0] == 0x03 and len(start) == 33  # the worker's run salt
    assert data and all(frame[0] == 0x01 for frame in data) and final[0] == 0x04  # exactly the last is final
    frame_bytes = AppSettings.model_validate(APP_ARGS).stream.frame_bytes
    assert {len(frame) for frame in data} == {wire_frame_sizes(frame_bytes)[0]}  # one size, whatever the text


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{oops", {"Content-Type": "application/json"}, 422),
        (json.dumps({**PROTOTYPE_REQUEST, "mode": "creative"}).encode(), {"Content-Type": "application/json"}, 422),
        (json.dumps(PROTOTYPE_REQUEST).encode(), {"Content-Type": "text/plain"}, 415),
        (json.dumps({**PROTOTYPE_REQUEST, "region": "mars-1"}).encode(), {"Content-Type": "application/json"}, 400),
        (json.dumps({**PROTOTYPE_REQUEST, "mode": "rag"}).encode(), {"Content-Type": "application/json"}, 422),
        (  # a region whose workers serve no collections
            json.dumps(
                {**PROTOTYPE_REQUEST, "mode": "rag", "collection_id": "c1", "collection_key": "A" * 44}
            ).encode(),
            {"Content-Type": "application/json"},
            501,
        ),
        (json.dumps({**PROTOTYPE_REQUEST, "prompt": "x" * 2001}).encode(), {"Content-Type": "application/json"}, 413),
    ],
)
def test_bad_input_over_real_http(ray_app: LocalApp, body: bytes, headers: dict[str, str], status: int) -> None:
    response = httpx.post(f"{ray_app.base_url}/infer", content=body, headers=headers, timeout=30)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) >= {"error", "message"}


def test_both_replicas_serve_and_envelopes_reach_only_their_recipient(ray_app: LocalApp) -> None:
    ray_app.wait_ready(MAIN_REGION, 2)
    workers = directory(ray_app, MAIN_REGION)
    assert len({w["worker_id"] for w in workers}) == 2
    served: dict[str, set[str]] = {}
    sampling = SamplingParams(max_new_tokens=4)
    for target in workers:
        for _ in range(4):
            sealed = seal_for([target], "hello", MAIN_REGION, sampling)
            response = post_envelope(ray_app, sealed, MAIN_REGION)
            assert response.status_code == 200
            completion = read_completion([response.content], sealed)
            served.setdefault(target["worker_id"], set()).add(completion.metrics["worker_id"])
    # Each envelope was opened by exactly the replica it was sealed for, and both replicas served.
    assert served == {w["worker_id"]: {w["worker_id"]} for w in workers}


def _stream_and_kill(app: LocalApp, sealed: SealedRequest, kill_when: str) -> tuple[bytes, float, str]:
    """Send ``sealed`` to the fault region and kill the replica serving it before or after its first frame.

    The gateway answers headers only with the first frame, so the request runs in a thread while this one
    watches the workers' states and kills the busy replica.
    """
    payload = {"tenant_id": "tenant1", "mode": "plain", "region": FAULT_REGION, "envelope": sealed.envelope.to_dict()}
    state = {"before_first_frame": "BUSY", "mid_stream": "STREAMING"}[kill_when]
    received = bytearray()

    def consume() -> int:
        with httpx.Client(timeout=60) as client, client.stream("POST", f"{app.base_url}/infer", json=payload) as r:
            for chunk in r.iter_bytes():
                received.extend(chunk)
            return r.status_code

    with ThreadPoolExecutor(1) as pool:
        status = pool.submit(consume)
        deadline = time.monotonic() + 10
        victim = ""
        while not victim and time.monotonic() < deadline:
            victim = next((w["worker_id"] for w in app.workers(FAULT_REGION) if w["state"] == state), "")
        assert victim, f"no worker reached {state}"
        kill_worker(victim)
        killed_at = time.monotonic()
        assert status.result() == 200
    return bytes(received), time.monotonic() - killed_at, victim


def test_replica_killed_mid_stream_gives_a_typed_error_frame(ray_app: LocalApp) -> None:
    ray_app.wait_ready(FAULT_REGION, 2)
    sealed = seal_for(directory(ray_app, FAULT_REGION), "x", FAULT_REGION, SamplingParams())
    received, after_kill_s, _ = _stream_and_kill(ray_app, sealed, "mid_stream")
    frames = decode_frames(received)
    assert frames[0][0] == 0x03 and frames[1][0] == 0x01  # start frame, then at least one chunk
    assert frames[-1][0] == 0x02 and json.loads(frames[-1][1:])["code"] == "worker_lost"
    assert after_kill_s < 1.5  # the client learns promptly, not after a timeout
    ray_app.wait_ready(FAULT_REGION, 2)  # Serve replaced the replica


def test_replica_killed_before_its_first_frame_is_retried_transparently(ray_app: LocalApp) -> None:
    ray_app.wait_ready(FAULT_REGION, 2)
    sealed = seal_for(directory(ray_app, FAULT_REGION), "x", FAULT_REGION, SamplingParams())
    received, _, victim = _stream_and_kill(ray_app, sealed, "before_first_frame")
    completion = read_completion([received], sealed)
    assert completion.text == "".join(FAULT_CHUNKS)
    assert completion.metrics["worker_id"] != victim
    ray_app.wait_ready(FAULT_REGION, 2)


def test_ray_metrics_endpoint_exposes_worker_and_gateway_metrics(ray_app: LocalApp) -> None:
    assert httpx.post(f"{ray_app.base_url}/infer", json=PROTOTYPE_REQUEST, timeout=60).status_code == 200
    wanted = [
        "securechat_worker_ttft_ms",
        "securechat_worker_total_ms",
        "securechat_worker_input_tokens",
        "securechat_worker_output_tokens",
        "securechat_worker_tokens_per_sec",
        "securechat_worker_state",
        "securechat_gateway_e2e_ms",
        "securechat_gateway_frames",
        "securechat_gateway_bytes",
        "securechat_gateway_requests",
    ]
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(ray_app.metrics_url, timeout=10).text
        if all(name in text for name in wanted):
            break
        time.sleep(1)
    assert [name for name in wanted if name not in text] == []
    assert 'state="READY"' in text and 'status_code="200"' in text


def test_canary_prompt_appears_in_no_log_and_no_response(ray_app: LocalApp) -> None:
    canary = f"CANARY{uuid.uuid4().hex}"
    prompt = f"Please repeat {canary} back to me."
    plain = httpx.post(f"{ray_app.base_url}/infer", json={**PROTOTYPE_REQUEST, "prompt": prompt}, timeout=60)
    sealed = seal_for(directory(ray_app, MAIN_REGION), prompt, MAIN_REGION, SamplingParams(max_new_tokens=8))
    client_sealed = post_envelope(ray_app, sealed, MAIN_REGION)
    bad = httpx.post(f"{ray_app.base_url}/infer", json={**PROTOTYPE_REQUEST, "prompt": prompt, "seed": "x"}, timeout=30)
    for response in (plain, client_sealed, bad):
        assert canary.encode() not in response.content
    time.sleep(2)  # let replicas flush their log files
    hits = []
    for path in ray_app.session_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 200_000_000:
            try:
                if canary.encode() in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    assert hits == []


def test_an_envelope_replayed_to_its_worker_through_a_ray_handle_is_refused(ray_app: LocalApp) -> None:
    """The host holds the worker deployment's handle and sends it an envelope that already ran there (the
    batched region has one worker, so the replay reaches the same one): a replayed_envelope error frame."""
    from ray import serve

    from deployments.app import worker_deployment_name
    from deployments.local import APP_NAME

    sampling = SamplingParams(max_new_tokens=4, temperature=0.0)
    sealed = seal_for(directory(ray_app, BATCHED_REGION), "Once only.", BATCHED_REGION, sampling)
    response = post_envelope(ray_app, sealed, BATCHED_REGION)
    assert response.status_code == 200 and read_completion([response.content], sealed).metrics["output_tokens"] == 4
    handle = serve.get_deployment_handle(worker_deployment_name(BATCHED_REGION), app_name=APP_NAME)

    async def replay() -> bytes:
        items = handle.options(method_name="run", stream=True).remote(sealed.envelope.to_bytes())
        return b"".join([item async for item in items])

    frames = decode_frames(asyncio.run(replay()))
    assert len(frames) == 1 and json.loads(frames[0][1:]) == {
        "code": "replayed_envelope",
        "request_id": sealed.request_id,
    }


def test_serve_runs_with_its_throughput_switches_and_handles_speak_grpc(ray_app: LocalApp) -> None:
    """Every Serve process of the app (proxy, gateway, orchestrator, workers) started with the switches, and the
    handles the app was built with default to gRPC (they take it from the process that built the app)."""
    import os as os_

    from ray import serve

    from deployments.local import APP_NAME
    from deployments.serve_env import THROUGHPUT_ENV

    serve_processes = {}
    for pid in filter(str.isdigit, os_.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline, open(f"/proc/{pid}/environ", "rb") as environ:
                command, env = cmdline.read().decode(errors="replace"), environ.read().decode(errors="replace")
        except OSError:
            continue
        if command.startswith(("ray::ServeReplica:securechat:", "ray::ProxyActor")):
            serve_processes[command.split("\0")[0]] = dict(
                line.split("=", 1) for line in env.split("\0") if "=" in line
            )
    kinds = {name.removeprefix("ray::").split(":")[-1].split("-")[0] for name in serve_processes}
    assert {"ProxyActor", "Gateway", "Orchestrator", "Worker"} <= kinds
    for name, env in serve_processes.items():
        assert {key: env.get(key) for key in THROUGHPUT_ENV} == THROUGHPUT_ENV, name
    handle = serve.get_deployment_handle("Gateway", app_name=APP_NAME)
    assert handle.handle_options._by_reference is False
