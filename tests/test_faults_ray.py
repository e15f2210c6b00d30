"""Faults on the running app: broken workers are replaced, a restarted orchestrator loses nothing silently,
and a worker being scaled down finishes its streams first."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from deployments.local import LocalApp, deploy
from securechat.engine.base import SamplingParams
from securechat.envelope import SealedRequest, seal_request
from securechat.framing import decode_frames
from securechat.keys import RecipientKey
from securechat.request_body import RequestBody
from securechat.response import read_completion
from tests.ray_harness import (
    APP_ARGS,
    FAULT_CHUNKS,
    FAULT_REGION,
    POISON_PROMPT,
    kill_orchestrator,
    with_region_replicas,
)

pytestmark = pytest.mark.ray


def key_directory(app: LocalApp) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = httpx.get(
        f"{app.base_url}/v1/keys", params={"region": FAULT_REGION}, timeout=10
    ).json()["workers"]
    return workers


def sealed_for_region(app: LocalApp, prompt: str = "x", workers: list[dict[str, Any]] | None = None) -> SealedRequest:
    workers = key_directory(app) if workers is None else workers
    keys = [RecipientKey.from_dict(k) for w in workers for k in w["keys"]]
    body = RequestBody.from_prompt(prompt, SamplingParams()).to_bytes()
    return seal_request(
        body, request_id=uuid.uuid4().hex, tenant_id="t1", mode="plain", region=FAULT_REGION, recipients=keys
    )


def post(app: LocalApp, sealed: SealedRequest) -> httpx.Response:
    payload = {"tenant_id": "t1", "mode": "plain", "region": FAULT_REGION, "envelope": sealed.envelope.to_dict()}
    return httpx.post(f"{app.base_url}/infer", json=payload, timeout=60)


def test_broken_worker_reports_failed_and_serve_replaces_it_with_new_keys(ray_app: LocalApp) -> None:
    ray_app.wait_ready(FAULT_REGION, 2, exact=True)
    before = {w["worker_id"]: w for w in key_directory(ray_app)}
    sealed = sealed_for_region(ray_app, POISON_PROMPT)
    response = post(ray_app, sealed)
    with pytest.raises(Exception) as failure:
        read_completion([response.content], sealed)
    assert getattr(failure.value, "code", None) == "engine_failed"
    # The dead engine fails Serve's health check; Serve replaces the replica, and the new one has new keys.
    deadline = time.monotonic() + 60
    after: dict[str, Any] = {}
    while time.monotonic() < deadline:
        after = {w["worker_id"]: w for w in ray_app.workers(FAULT_REGION) if w["state"] == "READY"}
        if len(after) == 2 and set(after) != set(before):
            break
        time.sleep(1)
    replaced = set(before) - set(after)
    assert len(replaced) == 1 and len(set(after) - set(before)) == 1
    old_keys = {k["key_id"] for w in before.values() for k in w["keys"]}
    new_worker = next(iter(set(after) - set(before)))
    assert not set(after[new_worker]["key_ids"]) & old_keys
    # A new envelope sealed only for the replaced worker's keys is now stale.
    stale = post(ray_app, sealed_for_region(ray_app, workers=[before[replaced.pop()]]))
    assert stale.status_code == 409 and stale.json()["error"] == "stale_keys"


def test_orchestrator_restart_ends_in_flight_with_error_frame_and_recovers(ray_app: LocalApp) -> None:
    ray_app.wait_ready(FAULT_REGION, 2)
    sealed = sealed_for_region(ray_app)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(post, ray_app, sealed)
        time.sleep(1.2)  # the first frame is out (the scripted engine sends one every 0.8 s)
        kill_orchestrator()
        response = in_flight.result()
    frames = decode_frames(response.content)
    assert response.status_code == 200 and frames[-1][0] == 0x02
    assert json.loads(frames[-1][1:])["code"] == "upstream_lost"
    deadline = time.monotonic() + 60
    status = 0
    while time.monotonic() < deadline and status != 200:
        try:
            status = post(ray_app, sealed_for_region(ray_app)).status_code
        except httpx.HTTPError:
            status = 0
        if status != 200:
            time.sleep(1)
    assert status == 200


def test_scaling_down_drains_in_flight_streams(ray_app: LocalApp) -> None:
    ray_app.wait_ready(FAULT_REGION, 2, exact=True)
    requests = [sealed_for_region(ray_app) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(post, ray_app, sealed) for sealed in requests]
            time.sleep(1.0)  # both streams are running, one on each replica
            deploy(with_region_replicas(FAULT_REGION, 1))
            responses = [f.result() for f in futures]
        for sealed, response in zip(requests, responses, strict=True):
            assert response.status_code == 200
            assert read_completion([response.content], sealed).text == "".join(FAULT_CHUNKS)
        ray_app.wait_ready(FAULT_REGION, 1, exact=True)
    finally:
        deploy(APP_ARGS)
        ray_app.wait_ready(FAULT_REGION, 2, exact=True)


def test_bounded_load_every_request_ends_verified_or_with_a_code(ray_app: LocalApp) -> None:
    """A small run of the load test against the shared app: nothing hangs, nothing unexpected."""
    import asyncio

    from benchmarks.load_test import Tenant, run_load
    from tests.ray_harness import MAIN_REGION

    tenants = [Tenant("tenant1", None), Tenant("tenant2", None)]
    report = asyncio.run(run_load(ray_app.base_url, tenants, clients=12, duration_s=4, region=MAIN_REGION))
    assert report.sent > 0 and report.outcomes["ok"] > 0
    assert report.unexpected == {}
    assert set(report.per_tenant) == {"tenant1", "tenant2"}


def test_client_disconnect_mid_stream_cancels_generation_and_frees_the_worker(ray_app: LocalApp) -> None:
    """A client that leaves mid-answer frees its worker: a request sealed only for that worker right after is
    served at once, not after the abandoned answer's remaining chunks (one request at a time per worker)."""
    ray_app.wait_ready(FAULT_REGION, 2, exact=True)
    directory = {w["worker_id"]: w for w in key_directory(ray_app)}
    sealed = sealed_for_region(ray_app, workers=list(directory.values()))
    payload = {"tenant_id": "t1", "mode": "plain", "region": FAULT_REGION, "envelope": sealed.envelope.to_dict()}
    victim = ""
    with httpx.Client(timeout=30) as client, client.stream("POST", f"{ray_app.base_url}/infer", json=payload) as r:
        assert r.status_code == 200
        chunks = r.iter_bytes()  # keep the iterator: dropping it closes the response, i.e. disconnects
        next(chunks)  # the answer has started
        deadline = time.monotonic() + 3
        while not victim and time.monotonic() < deadline:
            victim = next((w["worker_id"] for w in ray_app.workers(FAULT_REGION) if w["state"] != "READY"), "")
        assert victim in directory
    started = time.monotonic()
    follow_up = sealed_for_region(ray_app, workers=[directory[victim]])
    response = post(ray_app, follow_up)
    elapsed = time.monotonic() - started
    assert read_completion([response.content], follow_up).metrics["worker_id"] == victim
    # Its own answer takes len(FAULT_CHUNKS) x 0.8 s = 3.2 s; an uncancelled abandoned answer would add ~2.4 s.
    assert elapsed < 3.2 + 1.6
