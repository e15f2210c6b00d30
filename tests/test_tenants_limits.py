"""Admission: request and token buckets, concurrent streams, release on every exit, bounded memory."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from securechat.tenants.limits import LimitCode, LimitExceeded, TenantLimiter, estimate_tokens
from securechat.tenants.policy import TenantPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POLICY = TenantPolicy(
    requests_per_minute=60, tokens_per_minute=600, max_concurrent_streams=2, max_prompt_tokens=500, max_new_tokens=64
)


def refusal(limiter: TenantLimiter, tenant: str = "acme", est: int = 1, **kw: object) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit(tenant, kw.pop("policy", POLICY), est, **kw)  # type: ignore[arg-type]
    return refused.value


def test_requests_per_minute_with_retry_after() -> None:
    clock = Clock()
    limiter = TenantLimiter(clock=clock)
    policy = POLICY.model_copy(update={"max_concurrent_streams": 1000})
    for _ in range(60):
        limiter.admit("acme", policy, 1).release()
    refused = refusal(limiter, policy=policy)
    assert refused.code is LimitCode.RATE_LIMITED
    assert refused.retry_after_s == pytest.approx(1.0) and refused.retry_after_header == "1"
    limiter.admit("globex", policy, 1).release()  # tenants do not share buckets
    clock.now += 1.0
    limiter.admit("acme", policy, 1).release()  # one request per second refills
    assert refusal(limiter, policy=policy).code is LimitCode.RATE_LIMITED


def test_tokens_per_minute_charges_prompt_then_output() -> None:
    clock = Clock()
    limiter = TenantLimiter(clock=clock)
    with limiter.admit("acme", POLICY, 400) as lease:
        lease.charge_output(150)
        lease.charge_output(50)
    refused = refusal(limiter, est=100)  # 600 - 400 - 200 = 0 left
    assert refused.code is LimitCode.TOKEN_LIMITED
    assert refused.retry_after_s == pytest.approx(10.0)  # 100 tokens at 10 tokens/s
    clock.now += 10.0
    limiter.admit("acme", POLICY, 100).release()


def test_reconciling_the_prompt_estimate_refunds_or_charges() -> None:
    limiter = TenantLimiter(clock=Clock())
    lease = limiter.admit("acme", POLICY, 500)
    lease.charge_output(0, input_tokens=100)  # the estimate was 400 too high
    lease.release()
    limiter.admit("acme", POLICY, 500).release()  # 600 - 100 = 500 left: fits


def test_debt_delays_but_is_capped_at_one_minute() -> None:
    clock = Clock()
    limiter = TenantLimiter(clock=clock)
    with limiter.admit("acme", POLICY, 10) as lease:
        lease.charge_output(1_000_000)
    refused = refusal(limiter)
    assert refused.code is LimitCode.TOKEN_LIMITED and refused.retry_after_s is not None
    assert 60.0 < refused.retry_after_s <= 120.0


def test_a_request_bigger_than_the_bucket_runs_when_the_bucket_is_full() -> None:
    policy = POLICY.model_copy(update={"tokens_per_minute": 100})
    limiter = TenantLimiter(clock=Clock())
    limiter.admit("acme", policy, 400).release()
    assert refusal(limiter, policy=policy).code is LimitCode.TOKEN_LIMITED


def test_concurrent_streams() -> None:
    limiter = TenantLimiter(clock=Clock(), stream_retry_after_s=2.0)
    first, second = limiter.admit("acme", POLICY, 1), limiter.admit("acme", POLICY, 1)
    refused = refusal(limiter)
    assert (refused.code, refused.retry_after_s) == (LimitCode.TOO_MANY_STREAMS, 2.0)
    limiter.admit("globex", POLICY, 1)
    first.release()
    first.release()  # idempotent: a double release must not free a slot it does not hold
    assert limiter.open_streams("acme") == 1
    limiter.admit("acme", POLICY, 1)
    second.release()


def test_static_refusals_have_no_retry_after_and_charge_nothing() -> None:
    limiter = TenantLimiter(clock=Clock())
    restricted = POLICY.model_copy(update={"allowed_regions": ("eu-west-1",)})
    cases = [
        (refusal(limiter, policy=restricted, region="us-west-1"), LimitCode.REGION_NOT_ALLOWED),
        (refusal(limiter, est=501), LimitCode.PROMPT_TOO_LONG),
        (refusal(limiter, max_new_tokens=65), LimitCode.MAX_NEW_TOKENS_EXCEEDED),
    ]
    for refused, code in cases:
        assert refused.code is code and refused.retry_after_s is None and refused.retry_after_header is None
        assert str(refused) == code.value  # content-free message
    limiter.admit("acme", restricted, 500, region="eu-west-1", max_new_tokens=64).release()


def test_refused_requests_do_not_consume_rate() -> None:
    limiter = TenantLimiter(clock=Clock())
    policy = POLICY.model_copy(update={"requests_per_minute": 2, "max_concurrent_streams": 1})
    held = limiter.admit("acme", policy, 1)
    for _ in range(5):
        assert refusal(limiter, policy=policy).code is LimitCode.TOO_MANY_STREAMS
    held.release()
    limiter.admit("acme", policy, 1).release()  # the second request of the minute still fits


def test_release_on_exception_and_on_cancel() -> None:
    limiter = TenantLimiter(clock=Clock())

    async def fails() -> None:
        async with limiter.admit("acme", POLICY, 1):
            raise RuntimeError("engine failed")

    async def cancelled() -> None:
        started = asyncio.Event()

        async def stream() -> None:
            async with limiter.admit("acme", POLICY, 1):
                started.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(stream())
        await started.wait()
        assert limiter.open_streams("acme") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with pytest.raises(RuntimeError):
        asyncio.run(fails())
    assert limiter.open_streams("acme") == 0
    asyncio.run(cancelled())
    assert limiter.open_streams("acme") == 0


def test_a_dropped_lease_is_released_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="securechat")
    limiter = TenantLimiter(clock=Clock())
    limiter.admit("acme", POLICY, 1)  # never released: e.g. a streaming body that never started
    gc.collect()
    assert limiter.open_streams("acme") == 0
    assert "stream_lease_leaked tenant_id=acme" in caplog.text


def test_idle_tenants_are_forgotten() -> None:
    clock = Clock()
    limiter = TenantLimiter(clock=clock, sweep_interval_s=10.0)
    held = limiter.admit("busy", POLICY, 1)
    for i in range(100):
        limiter.admit(f"tenant{i}", POLICY, 1).release()
    assert limiter.num_tracked_tenants == 101
    clock.now += 61.0  # every bucket has refilled
    limiter.admit("new", POLICY, 1).release()
    assert limiter.num_tracked_tenants == 2  # "busy" holds a stream, "new" was just seen
    held.release()


def test_memory_is_bounded_past_the_cap() -> None:
    limiter = TenantLimiter(clock=Clock(), max_tenants=50)
    held = limiter.admit("busy", POLICY, 1)
    for i in range(1000):
        limiter.admit(f"tenant{i}", POLICY, 1).release()
        assert limiter.num_tracked_tenants <= 50
    assert limiter.open_streams("busy") == 1  # a tenant with an open stream is never dropped
    held.release()


def test_policy_edits_apply_to_existing_buckets() -> None:
    clock = Clock()
    limiter = TenantLimiter(clock=clock)
    limiter.admit("acme", POLICY, 1).release()
    tight = POLICY.model_copy(update={"requests_per_minute": 1})
    assert refusal(limiter, policy=tight).code is LimitCode.RATE_LIMITED  # the one request this minute is used
    loose = POLICY.model_copy(update={"requests_per_minute": 3})
    limiter.admit("acme", loose, 1).release()
    limiter.admit("acme", loose, 1).release()
    assert refusal(limiter, policy=loose).code is LimitCode.RATE_LIMITED  # 3 per minute, 3 used


def test_estimate_tokens() -> None:
    assert estimate_tokens(0) == 1 and estimate_tokens(4) == 1 and estimate_tokens(5) == 2


def test_a_clock_that_steps_back_does_not_refill() -> None:
    clock = Clock()
    limiter = TenantLimiter(clock=clock)
    policy = POLICY.model_copy(update={"requests_per_minute": 1})
    limiter.admit("acme", policy, 1).release()
    clock.now -= 500
    assert refusal(limiter, policy=policy).code is LimitCode.RATE_LIMITED


def test_output_charged_after_idle_time_does_not_count_the_idle_time_twice() -> None:
    """The bug a review found: at 600 tokens/min, 600 admitted at t=0 and 1,200 charged at t=60 must leave
    the next request about 60 s away (a minute's debt), not 0.1 s."""
    clock = Clock()
    limiter = TenantLimiter(clock=clock)
    policy = POLICY.model_copy(update={"tokens_per_minute": 600, "max_prompt_tokens": 600})
    lease = limiter.admit("acme", policy, 600)
    clock.now += 60.0
    lease.charge_output(1_200)
    lease.release()
    refused = refusal(limiter, policy=policy)
    assert refused.code is LimitCode.TOKEN_LIMITED
    assert refused.retry_after_s == pytest.approx(60.1)
