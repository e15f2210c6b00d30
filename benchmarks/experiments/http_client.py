"""End-to-end measurement: drive the running Serve app over HTTP, as a client does.

Each request is sealed here for the region's keys from ``GET /v1/keys`` (unverified keys: attestation is not
what is timed), POSTed to ``/infer`` as an octet stream, and its frames decoded and opened here, so one request
yields both sides: the client's end-to-end time, frames and bytes, and the worker's own metrics from the
authenticated final frame. ``e2e_ms`` runs from sending the POST to the last byte (sealing excluded).
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import httpx

from securechat.client.messages import build_body
from securechat.engine.base import ChatMessage
from securechat.envelope import seal_request
from securechat.framing import decode_frames
from securechat.keys import RecipientKey, recipients_of
from securechat.response import read_completion

TENANT: Final = "bench"
SERVING_STATES: Final = ("READY", "BUSY", "STREAMING")
TIMEOUT_S: Final = 900.0


@dataclass(frozen=True, slots=True)
class HttpResult:
    e2e_ms: float
    frames: int
    num_bytes: int
    worker: dict[str, Any]  # the final frame's metrics: ttft_ms, total_ms, tokens, tokens_per_sec, worker_id


class AppClient:
    """Thread-safe: one httpx connection pool shared by every concurrent stream."""

    def __init__(self, base_url: str, max_connections: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.Client(timeout=TIMEOUT_S, limits=limits)
        self._keys: dict[str, list[RecipientKey]] = {}

    def close(self) -> None:
        self._http.close()

    def keys(self, region: str, *, refresh: bool = False) -> list[RecipientKey]:
        if refresh or region not in self._keys:
            body = self._http.get(f"{self.base_url}/v1/keys", params={"region": region}).json()
            workers = [w for w in body["workers"] if w.get("state") in SERVING_STATES]
            self._keys[region] = recipients_of(workers)
        return self._keys[region]

    def infer(self, region: str, messages: tuple[ChatMessage, ...], max_new_tokens: int, seed: int) -> HttpResult:
        body = build_body(messages, max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
        for attempt in (1, 2):
            sealed = seal_request(
                body,
                request_id=uuid.uuid4().hex,
                tenant_id=TENANT,
                mode="plain",
                region=region,
                recipients=self.keys(region, refresh=attempt > 1),
            )
            payload = {"tenant_id": TENANT, "mode": "plain", "region": region, "envelope": sealed.envelope.to_dict()}
            started = time.perf_counter()
            with self._http.stream("POST", f"{self.base_url}/infer", json=payload) as response:
                if response.status_code == 409 and attempt == 1:  # stale_keys: a worker was replaced
                    continue
                if response.status_code != 200:
                    response.read()
                    raise RuntimeError(f"/infer answered {response.status_code}: {response.text[:200]}")
                data = b"".join(response.iter_raw())
            e2e_ms = (time.perf_counter() - started) * 1000
            completion = read_completion([data], sealed)
            return HttpResult(e2e_ms, len(decode_frames(data)), len(data), completion.metrics)
        raise RuntimeError("/infer kept answering stale_keys")

    def burst(
        self, region: str, messages: tuple[ChatMessage, ...], max_new_tokens: int, num_streams: int, seed: int = 0
    ) -> tuple[float, list[HttpResult]]:
        """``num_streams`` requests at once; returns the wall time until the last finished, and each result."""
        with ThreadPoolExecutor(max_workers=num_streams) as pool:
            started = time.perf_counter()
            futures = [pool.submit(self.infer, region, messages, max_new_tokens, seed + i) for i in range(num_streams)]
            results = [future.result() for future in futures]
        return (time.perf_counter() - started) * 1000, results
