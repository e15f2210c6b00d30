"""Bounded load test on loopback: many concurrent clients, several tenants, every request accounted for.

Starts the whole app on a local Ray cluster (free ports, auth required, a temporary tenant store), then runs
``--clients`` concurrent clients for ``--duration-s`` seconds, round-robin across ``--tenants`` tenants. Each
client seals its prompt for the region's workers, streams the answer and checks every frame (decrypted, in
order, with its final frame). A refused request (429/503) waits its Retry-After, as a well-behaved client does.
Every request ends as ``ok`` or with an explicit error code; a hung connection counts as ``timeout`` and fails
the run. Memory (RSS of the Ray processes) is sampled throughout.

    python -m benchmarks.load_test --clients 200 --duration-s 60        # make load-test

Last lines: a summary table (sent, completed, each outcome, p50/p99 latency, memory).
JSON (``--out``): {"clients", "duration_s", "tenants", "engine", "sent", "outcomes": {code: n},
"latency_ms": summarize(), "per_tenant": {tenant: {code: n}}, "memory_mb": {"start", "max", "end"}, "ok": bool}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.stats import summarize
from securechat.engine.base import SamplingParams
from securechat.envelope import seal_request
from securechat.errors import InvalidCiphertext, InvalidFrame
from securechat.keys import RecipientKey, recipients_of
from securechat.request_body import RequestBody
from securechat.response import ResponseFailed, read_completion

EXPECTED = frozenset({"ok", "rate_limited", "token_limited", "too_many_streams", "overloaded", "no_worker_available"})
REGION = "us-west-1"


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    api_key: str | None


@dataclass
class LoadReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    per_tenant: dict[str, Counter[str]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def record(self, tenant: str, outcome: str, latency_ms: float | None = None) -> None:
        self.outcomes[outcome] += 1
        self.per_tenant.setdefault(tenant, Counter())[outcome] += 1
        if latency_ms is not None:
            self.latencies_ms.append(latency_ms)

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def unexpected(self) -> dict[str, int]:
        return {code: n for code, n in self.outcomes.items() if code not in EXPECTED}


async def _keys(http: httpx.AsyncClient, tenant: Tenant, region: str) -> list[RecipientKey]:
    response = await http.get("/v1/keys", params={"region": region}, headers=_auth(tenant))
    return recipients_of(response.json()["workers"])


def _auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"} if tenant.api_key else {}


async def _one_request(
    http: httpx.AsyncClient, tenant: Tenant, keys: list[RecipientKey], region: str, max_new_tokens: int, seed: int
) -> tuple[str, float | None, float]:
    """(outcome, latency_ms if ok, seconds to wait before the next request)."""
    body = RequestBody.from_prompt(f"Load test request {seed}.", SamplingParams(max_new_tokens, 0.8, 1.0, seed))
    sealed = seal_request(
        body.to_bytes(),
        request_id=uuid.uuid4().hex,
        tenant_id=tenant.tenant_id,
        mode="plain",
        region=region,
        recipients=keys,
    )
    payload = {"tenant_id": tenant.tenant_id, "mode": "plain", "region": region, "envelope": sealed.envelope.to_dict()}
    started = time.perf_counter()
    try:
        response = await http.post("/infer", json=payload, headers=_auth(tenant))
    except httpx.TimeoutException:
        return "timeout", None, 0.0
    except httpx.HTTPError:
        return "connection_error", None, 0.5
    if response.status_code != 200:
        code = str(response.json().get("error", response.status_code))
        return code, None, float(response.headers.get("retry-after", 0))
    try:
        read_completion([response.content], sealed)
    except ResponseFailed as failure:
        return failure.code, None, 0.0
    except (InvalidCiphertext, InvalidFrame):
        return "invalid_ciphertext", None, 0.0
    return "ok", (time.perf_counter() - started) * 1000, 0.0


async def run_load(
    base_url: str,
    tenants: Sequence[Tenant],
    *,
    clients: int,
    duration_s: float,
    region: str = REGION,
    max_new_tokens: int = 16,
    timeout_s: float = 30.0,
) -> LoadReport:
    """Drive ``clients`` concurrent clients for ``duration_s``; every request ends in the report."""
    report = LoadReport()
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as http:
        keys = {t.tenant_id: await _keys(http, t, region) for t in tenants}

        async def client(index: int) -> None:
            tenant = tenants[index % len(tenants)]
            seed = index * 100_000
            while time.monotonic() < deadline:
                seed += 1
                outcome, latency_ms, wait_s = await _one_request(
                    http, tenant, keys[tenant.tenant_id], region, max_new_tokens, seed
                )
                report.record(tenant.tenant_id, outcome, latency_ms)
                if outcome == "stale_keys":
                    keys[tenant.tenant_id] = await _keys(http, tenant, region)
                if wait_s:
                    await asyncio.sleep(min(wait_s, max(0.0, deadline - time.monotonic())))

        await asyncio.gather(*(client(i) for i in range(clients)))
    return report


def ray_rss_mb() -> float:
    """Resident memory of this machine's Ray processes (raylet, GCS, replicas, workers)."""
    total = 0
    for process in psutil.process_iter(["cmdline", "memory_info"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "ray" in cmdline and process.info.get("memory_info") is not None:
            total += process.info["memory_info"].rss
    return total / 2**20


async def sample_memory(samples: list[float], stop: asyncio.Event, every_s: float = 2.0) -> None:
    while not stop.is_set():
        samples.append(await asyncio.to_thread(ray_rss_mb))
        with contextlib.suppress(TimeoutError):  # the sampling period elapsed
            await asyncio.wait_for(stop.wait(), every_s)


def app_args(store_dir: Path, engine: str, max_streams: int) -> dict[str, Any]:
    engine_settings: dict[str, Any] = {"kind": engine, "dtype": "fp32", "device": "cpu", "max_new_tokens": 32}
    if engine == "batched":
        engine_settings["max_batch_size"] = 16
    return {
        "regions": [{"name": REGION, "num_replicas": 2}],
        "engine": engine_settings,
        "auth": {"mode": "required"},
        "tenants": {
            "store_path": str(store_dir / "tenants.sqlite3"),
            "server_secret_path": str(store_dir / "server_secret"),
            "default_policy": {
                "max_concurrent_streams": max_streams,
                "requests_per_minute": 6000,
                "tokens_per_minute": 2_000_000,
            },
        },
        "dispatch": {"choose_timeout_s": 10, "max_in_flight": 256, "worker_max_queued_requests": 64},
    }


def table(report: LoadReport, memory: list[float], clients: int, duration_s: float) -> str:
    latency = summarize(report.latencies_ms)
    rows = [
        "| metric | value |",
        "|---|---|",
        f"| clients x duration | {clients} x {duration_s:g} s |",
        f"| sent | {report.sent} |",
        f"| completed (verified) | {report.outcomes.get('ok', 0)} |",
        *(f"| {code} | {n} |" for code, n in sorted(report.outcomes.items()) if code != "ok"),
        f"| latency p50 / p99 ms (ok) | {latency.get('p50', 0):.1f} / {latency.get('p99', 0):.1f} |",
        f"| Ray RSS MB start / max / end | {memory[0]:.0f} / {max(memory):.0f} / {memory[-1]:.0f} |",
        f"| unexpected outcomes | {report.unexpected or 'none'} |",
    ]
    return "\n".join(rows)


async def _measure(base_url: str, tenants: list[Tenant], args: argparse.Namespace) -> tuple[LoadReport, list[float]]:
    memory: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_memory(memory, stop))
    report = await run_load(base_url, tenants, clients=args.clients, duration_s=args.duration_s)
    stop.set()
    await sampler
    memory.append(ray_rss_mb())
    return report, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--engine", choices=["hf", "batched"], default="batched")
    parser.add_argument("--max-streams-per-tenant", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/load-test.json"))
    args = parser.parse_args()

    from deployments.local import start_local, stop_local
    from securechat.tenants.settings import TenantsSettings
    from securechat.tenants.store import TenantStore

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="securechat-load-") as tmp:
        store_dir = Path(tmp)
        names = [f"tenant{i + 1}" for i in range(args.tenants)]
        settings = app_args(store_dir, args.engine, args.max_streams_per_tenant)
        tenants_settings = TenantsSettings.model_validate(settings["tenants"])
        with TenantStore(tenants_settings.store_path, tenants_settings.server_secret_path) as store:
            tenants = [Tenant(name, store.add_key(name)) for name in names]
        app = start_local(settings, env={"SECURECHAT_PLATFORM_ROOT": str(store_dir / "root.pem")})
        try:
            report, memory = asyncio.run(_measure(app.base_url, tenants, args))
        finally:
            stop_local()
    result = {
        "clients": args.clients,
        "duration_s": args.duration_s,
        "tenants": names,
        "engine": args.engine,
        "sent": report.sent,
        "outcomes": dict(report.outcomes),
        "latency_ms": summarize(report.latencies_ms),
        "per_tenant": {t: dict(c) for t, c in report.per_tenant.items()},
        "memory_mb": {"start": round(memory[0]), "max": round(max(memory)), "end": round(memory[-1])},
        "ok": not report.unexpected and report.outcomes.get("ok", 0) > 0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(report, memory, args.clients, args.duration_s))
    raise SystemExit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
