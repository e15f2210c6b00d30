"""Token bucket arithmetic: refill, waits, debt, and charges that bring the bucket to the present first."""

from __future__ import annotations

import pytest

from securechat.tenants.buckets import TokenBucket


def test_a_charge_after_idle_time_refills_first_then_spends() -> None:
    """600 tokens/min: 600 admitted at t=0, 1,200 charged at t=60. The bucket had refilled to 600 by then, so
    the charge leaves it at -600 (one minute's debt), and one more token is (1 + 600) / 10 = 60.1 s away.
    Charging the stale level instead would count the idle minute as refill twice and wait only 0.1 s."""
    bucket = TokenBucket.full(600, now=0.0)
    assert bucket.wait_s(600) == 0.0
    bucket.take(600)
    bucket.charge(1_200, now=60.0)
    assert bucket.level == pytest.approx(-600.0)
    bucket.refill(60.0)
    assert bucket.wait_s(1) == pytest.approx(60.1)


def test_refill_is_continuous_and_capped() -> None:
    bucket = TokenBucket.full(60, now=0.0)
    bucket.take(60)
    bucket.refill(30.0)
    assert bucket.level == pytest.approx(30.0)
    bucket.refill(10_000.0)
    assert bucket.level == pytest.approx(60.0)


def test_debt_and_credit_are_capped_at_one_minute() -> None:
    bucket = TokenBucket.full(100, now=0.0)
    bucket.charge(1_000_000, now=0.0)
    assert bucket.level == -100.0
    bucket.charge(-1_000_000, now=0.0)  # a refund never lifts the level above capacity
    assert bucket.level == 100.0


def test_a_cost_above_capacity_waits_for_a_full_bucket_only() -> None:
    bucket = TokenBucket.full(100, now=0.0)
    assert bucket.wait_s(400) == 0.0
    bucket.take(1)
    assert bucket.wait_s(400) == pytest.approx(0.6)  # one token at 100/min


def test_a_policy_change_keeps_what_was_used() -> None:
    bucket = TokenBucket.full(10, now=0.0)
    bucket.take(4)
    bucket.refill(0.0, per_minute=20)
    assert (bucket.capacity, bucket.level) == (20.0, 16.0)


def test_a_clock_that_steps_back_never_refills_twice() -> None:
    bucket = TokenBucket.full(60, now=100.0)
    bucket.take(60)
    bucket.refill(50.0)
    assert bucket.level == 0.0
    bucket.refill(101.0)
    assert bucket.level == pytest.approx(1.0)  # one second after the latest time seen, not 51
