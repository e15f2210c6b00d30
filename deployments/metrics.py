"""Ray metrics (shown on the Ray dashboard / Prometheus endpoint). Tags are ids and codes only, never content."""

from __future__ import annotations

from typing import Any

from ray.serve.metrics import Counter, Gauge, Histogram

from securechat.engine.base import GenerationStats
from securechat.errors import ErrorCode
from securechat.state import WorkerState

MS_BUCKETS = [1.0, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]
TOKEN_BUCKETS = [1.0, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096]
RATE_BUCKETS = [1.0, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]
WORKER_TAGS = ("worker_id", "region")


def _tag_keys(*names: str) -> Any:
    """Ray annotates tag_keys as ``Tuple[str]`` though it takes any number of names."""
    return names


def _worker_histogram(name: str, description: str, buckets: list[float]) -> Histogram:
    return Histogram(name, description, buckets, _tag_keys(*WORKER_TAGS))


class WorkerMetrics:
    """The worker's observer: per-request engine figures and a one-hot state gauge."""

    def __init__(self, worker_id: str, region: str) -> None:
        self._ttft = _worker_histogram("securechat_worker_ttft_ms", "Time to first token at the worker.", MS_BUCKETS)
        self._total = _worker_histogram("securechat_worker_total_ms", "Worker time per request.", MS_BUCKETS)
        self._input = _worker_histogram("securechat_worker_input_tokens", "Prompt tokens per request.", TOKEN_BUCKETS)
        self._output = _worker_histogram("securechat_worker_output_tokens", "Tokens generated.", TOKEN_BUCKETS)
        self._rate = _worker_histogram("securechat_worker_tokens_per_sec", "Generation speed.", RATE_BUCKETS)
        self._requests = Counter(
            "securechat_worker_requests", "Requests ended, by outcome.", _tag_keys(*WORKER_TAGS, "outcome")
        )
        self._state = Gauge(
            "securechat_worker_state", "1 for the worker's current state, else 0.", _tag_keys(*WORKER_TAGS, "state")
        )
        tags = {"worker_id": worker_id, "region": region}
        for metric in (self._ttft, self._total, self._input, self._output, self._rate, self._requests, self._state):
            metric.set_default_tags(dict(tags))  # Serve adds its own tags to the dict it is given
        self.state_changed(WorkerState.MODEL_LOADING, WorkerState.MODEL_LOADING)

    def state_changed(self, previous: WorkerState, current: WorkerState) -> None:
        for state in WorkerState:
            self._state.set(1 if state is current else 0, tags={"state": state.value})

    def request_finished(self, stats: GenerationStats) -> None:
        self._ttft.observe(stats.ttft_ms)
        self._total.observe(stats.total_ms)
        self._input.observe(stats.input_tokens)
        self._output.observe(stats.output_tokens)
        self._rate.observe(stats.tokens_per_sec)
        self._requests.inc(tags={"outcome": "ok"})

    def request_failed(self, code: ErrorCode) -> None:
        self._requests.inc(tags={"outcome": code.value})


class GatewayMetrics:
    def __init__(self) -> None:
        status = _tag_keys("status_code")
        self._e2e = Histogram("securechat_gateway_e2e_ms", "End-to-end time at the gateway.", MS_BUCKETS, status)
        self._frames = Counter("securechat_gateway_frames", "Frames streamed to clients.")
        self._bytes = Counter("securechat_gateway_bytes", "Bytes streamed to clients.")
        self._requests = Counter("securechat_gateway_requests", "Requests by HTTP status.", status)

    def request_finished(self, status_code: int, e2e_ms: float, frames: int, num_bytes: int) -> None:
        tags = {"status_code": str(status_code)}
        self._e2e.observe(e2e_ms, tags=tags)
        self._requests.inc(tags=tags)
        if frames:
            self._frames.inc(frames)
        if num_bytes:
            self._bytes.inc(num_bytes)
