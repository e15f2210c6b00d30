"""Sealing benchmark: what the post-quantum hybrid suite costs beside the classical ones, in one run.

In-process, per suite (``securechat.suites``): the public key and one wrap in bytes, the envelope's wire bytes
per extra recipient, and the medians of sealing (client, 1 and 8 recipients) and opening (worker) times. The
attestation document's size for the previous default key set (X25519 + RSA-3072) and the new one (hybrid).
End to end: one app (one batched tiny-model worker) whose worker offers the hybrid and an X25519 key; requests
sealed to one or the other alternate, and the client's TTFT (sealing started -> first text opened) is
compared at one stream. "Before" is X25519, the suite clients used by default until now; "after" the hybrid.

    python -m benchmarks.bench_sealing --out benchmarks/results/sealing/cpu.json     # make bench-sealing
    python -m benchmarks.bench_sealing --requests 4 --reps 20                       # quicker

Output: markdown tables, then as the last line ``hybrid/x25519 e2e TTFT p50 ratio: <x>``.
JSON (``--out``; markdown beside it): {"benchmark", "machine", "suites": [{"suite", "public_key_bytes",
"wrap_bytes", "envelope_bytes_per_recipient", "seal_us_p50" (1 recipient), "seal8_us_p50", "open_us_p50"}],
"attestation_document_bytes": {"before": n, "after": n}, "e2e": {"requests", "max_new_tokens",
"<suite>": {"ttft_ms": summary}}, "ratio_ttft_p50"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.experiments.common import cpu_model_name
from benchmarks.stats import percentile, summarize
from securechat.attestation import issue_document, new_nonce
from securechat.client.messages import build_body
from securechat.envelope import open_request, seal_request
from securechat.framing import FrameDecoder
from securechat.keys import RecipientKey, Suite, WorkerKeys, recipients_of
from securechat.stream import ErrorEvent, ResponseOpener, TextEvent
from securechat.worker import WorkerIdentity

REGION: Final = "us-west-1"
TENANT: Final = "bench"
BODY: Final = build_body("How do I keep sourdough starter alive over a long holiday?", max_new_tokens=16)
BEFORE: Final = Suite.HPKE_X25519
AFTER: Final = Suite.HPKE_MLKEM768_X25519
PREVIOUS_DEFAULT_KEYS: Final = (Suite.HPKE_X25519, Suite.RSA_OAEP)  # what every worker made until now
REGISTERS: Final = {name: "ab" * 32 for name in ("code", "config", "model", "embedder")}


def _median_us(action: Callable[[], object], reps: int) -> float:
    action()  # warm-up
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1e6)
    return round(percentile(times, 50), 1)


def _seal(recipients: Sequence[RecipientKey]) -> Any:
    return seal_request(
        BODY, request_id=uuid.uuid4().hex, tenant_id=TENANT, mode="plain", region=REGION, recipients=recipients
    )


def measure_suite(suite: Suite, reps: int) -> dict[str, Any]:
    workers = [WorkerKeys.generate((suite,)) for _ in range(9)]
    keys = [worker.public_key(suite) for worker in workers]
    one, nine = _seal(keys[:1]).envelope, _seal(keys).envelope
    return {
        "suite": suite.value,
        "post_quantum": suite.post_quantum,
        "public_key_bytes": len(keys[0].public_key_bytes),
        "wrap_bytes": len(one.wrapped_keys[keys[0].key_id]),
        # JSON on the wire: base64 wrap, key id and its suite in the header (itself base64), separators
        "envelope_bytes_per_recipient": round((len(nine.to_bytes()) - len(one.to_bytes())) / 8, 1),
        "seal_us_p50": _median_us(lambda: _seal(keys[:1]), reps),
        "seal8_us_p50": _median_us(lambda: _seal(keys[:8]), reps),
        "open_us_p50": _median_us(lambda: open_request(one, workers[0]), reps),
    }


def document_bytes(suites: Sequence[Suite]) -> int:
    identity = WorkerIdentity("us-west-1-abcdef12", REGION, WorkerKeys.generate(suites).public_keys)
    root = ed25519.Ed25519PrivateKey.generate()
    document = issue_document(root, identity, REGISTERS, new_nonce(), now=time.time(), key_ttl_s=86_400)
    return len(json.dumps(document.to_dict(), separators=(",", ":")).encode())


# -- end to end ------------------------------------------------------------------------------------------------
def app_args(max_new_tokens: int) -> dict[str, Any]:
    engine = {
        "kind": "batched",
        "model": "securechat/tiny-qwen2",
        "dtype": "fp32",
        "device": "cpu",
        "max_input_tokens": 512,
        "max_new_tokens": max_new_tokens,
        "disable_eos": True,
        "max_batch_size": 4,
        "torch_threads": 1,
    }
    return {
        "regions": [{"name": REGION, "num_replicas": 1}],
        "engine": engine,
        "sealing": {"suites": [AFTER.value, BEFORE.value]},  # a compatibility profile: both, in one worker
        "auth": {"mode": "disabled"},
        "tenants": {"default_policy": {"requests_per_minute": 1_000_000, "tokens_per_minute": 10**9}},
    }


async def _ttft_ms(http: httpx.AsyncClient, base_url: str, key: RecipientKey, max_new_tokens: int) -> float:
    started = time.perf_counter()
    body = build_body("Tell me about bridges.", max_new_tokens=max_new_tokens, temperature=0.0, seed=1)
    sealed = seal_request(
        body, request_id=uuid.uuid4().hex, tenant_id=TENANT, mode="plain", region=REGION, recipients=[key]
    )
    payload = {"tenant_id": TENANT, "mode": "plain", "region": REGION, "envelope": sealed.envelope.to_dict()}
    opener = ResponseOpener.for_request(sealed.dek, sealed.request_id)
    decoder = FrameDecoder()
    first_text_ms: float | None = None
    async with http.stream("POST", f"{base_url}/infer", json=payload) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"/infer answered {response.status_code}: {response.text[:200]}")
        async for chunk in response.aiter_raw():
            for frame in decoder.feed(chunk):
                event = opener.open(frame)
                if isinstance(event, TextEvent) and event.text and first_text_ms is None:
                    first_text_ms = (time.perf_counter() - started) * 1000
                elif isinstance(event, ErrorEvent):
                    raise RuntimeError(f"stream failed: {event.code}")
    decoder.close()
    opener.finish()
    assert first_text_ms is not None
    return first_text_ms


async def _drive(base_url: str, requests: int, max_new_tokens: int) -> dict[str, list[float]]:
    async with httpx.AsyncClient(timeout=120) as http:
        workers = (await http.get(f"{base_url}/v1/keys", params={"region": REGION})).json()["workers"]
        keys = {suite: recipients_of(workers, (suite,))[0] for suite in (BEFORE, AFTER)}
        for suite in (BEFORE, AFTER):  # warm-up
            await _ttft_ms(http, base_url, keys[suite], max_new_tokens)
        measured: dict[str, list[float]] = {BEFORE.value: [], AFTER.value: []}
        for index in range(requests):
            order = (BEFORE, AFTER) if index % 2 == 0 else (AFTER, BEFORE)  # alternate: drift hits both alike
            for suite in order:
                measured[suite.value].append(await _ttft_ms(http, base_url, keys[suite], max_new_tokens))
        return measured


def measure_end_to_end(requests: int, max_new_tokens: int) -> dict[str, Any]:
    from deployments.local import start_local, stop_local

    app = start_local(app_args(max_new_tokens))
    try:
        measured = asyncio.run(_drive(app.base_url, requests, max_new_tokens))
    finally:
        stop_local()
    return {
        "requests": requests,
        "max_new_tokens": max_new_tokens,
        **{suite: {"ttft_ms": summarize(values)} for suite, values in measured.items()},
    }


# -- report ----------------------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Sealing: the post-quantum hybrid beside the classical suites ({report['machine']})",
        "",
        "Per suite, in-process (medians of "
        f"{report['reps']} runs; seal = the client's whole seal_request of a {len(BODY)}-byte body):",
        "",
        "| suite | post-quantum | public key B | wrap B | envelope B per recipient | seal 1 recipient µs "
        "| seal 8 recipients µs | open µs (worker) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["suites"]:
        lines.append(
            f"| {row['suite']} | {'yes' if row['post_quantum'] else 'no'} | {row['public_key_bytes']:,} "
            f"| {row['wrap_bytes']:,} | {row['envelope_bytes_per_recipient']:,} | {row['seal_us_p50']:,} "
            f"| {row['seal8_us_p50']:,} | {row['open_us_p50']:,} |"
        )
    docs = report["attestation_document_bytes"]
    e2e = report["e2e"]
    before, after = e2e[BEFORE.value]["ttft_ms"], e2e[AFTER.value]["ttft_ms"]
    lines += [
        "",
        "Attestation document (JSON bytes, one worker, four registers):",
        "",
        "| key set | bytes |",
        "|---|---|",
        f"| before: X25519 + RSA-3072 (the previous default) | {docs['before']:,} |",
        f"| after: MLKEM768-X25519 (the default now) | {docs['after']:,} |",
        "",
        f"End to end, one stream, {e2e['requests']} requests per suite alternating on one worker that offers both "
        f"(batched tiny model, {e2e['max_new_tokens']} new tokens); TTFT = sealing started -> first text opened:",
        "",
        "| suite | TTFT p50 ms | p90 ms | mean ms |",
        "|---|---|---|---|",
        f"| before: {BEFORE.value} | {before['p50']:.2f} | {before['p90']:.2f} | {before['mean']:.2f} |",
        f"| after: {AFTER.value} | {after['p50']:.2f} | {after['p90']:.2f} | {after['mean']:.2f} |",
        "",
        f"Ratio after/before, TTFT p50: {report['ratio_ttft_p50']:.3f}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200, help="timed runs per in-process measurement")
    parser.add_argument("--requests", type=int, default=40, help="end-to-end requests per suite")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="tokens per end-to-end answer")
    parser.add_argument("--out", type=Path, default=None, help="JSON path; the markdown tables go beside it")
    args = parser.parse_args(argv)
    suites = [measure_suite(suite, args.reps) for suite in Suite]
    for row in suites:
        print(f"{row['suite']:<45} seal {row['seal_us_p50']:>8,.1f} µs  open {row['open_us_p50']:>8,.1f} µs")
    documents = {"before": document_bytes(PREVIOUS_DEFAULT_KEYS), "after": document_bytes((AFTER,))}
    e2e = measure_end_to_end(args.requests, args.max_new_tokens)
    ratio = e2e[AFTER.value]["ttft_ms"]["p50"] / e2e[BEFORE.value]["ttft_ms"]["p50"]
    report: dict[str, Any] = {
        "benchmark": "sealing",
        "machine": f"{cpu_model_name()}, {os.cpu_count()} cores",
        "reps": args.reps,
        "body_bytes": len(BODY),
        "suites": suites,
        "attestation_document_bytes": documents,
        "e2e": e2e,
        "ratio_ttft_p50": round(ratio, 3),
    }
    table = markdown(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table)
    print(table)
    print(f"hybrid/x25519 e2e TTFT p50 ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
