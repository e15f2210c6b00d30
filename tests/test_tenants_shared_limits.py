"""SharedLimiter: one allowance for every gateway replica, in SQLite (one node) and in a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.db import Database
from securechat.db.postgres import PostgresDatabase
from securechat.db.sqlite import SQLiteDatabase
from securechat.tenants import db as tenant_schema
from securechat.tenants.limits import LimitCode, LimitExceeded
from securechat.tenants.policy import TenantPolicy
from securechat.tenants.shared_limits import SharedLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


POLICY = TenantPolicy(requests_per_minute=10, tokens_per_minute=600, max_concurrent_streams=100, max_prompt_tokens=600)


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    """Two connections to one database, as two gateway replicas (on two nodes, for PostgreSQL) have."""
    if request.param == "sqlite":
        pair: tuple[Database, Database] = (
            SQLiteDatabase(tmp_path / "t.sqlite3"),
            SQLiteDatabase(tmp_path / "t.sqlite3"),
        )
    else:
        url = request.getfixturevalue("postgres_url")
        pair = (PostgresDatabase(url), PostgresDatabase(url))
    tenant_schema.migrate(pair[0])
    yield pair
    for database in pair:
        database.close()


def code_of(limiter: SharedLimiter, policy: TenantPolicy = POLICY, est: int = 1) -> LimitCode:
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit("acme", policy, est)
    return refused.value.code


def test_two_replicas_admit_exactly_the_tenants_rate(databases: tuple[Database, Database]) -> None:
    """10 requests/min, 20 requests spread over two replicas from several threads: exactly 10 admitted."""
    replicas = [SharedLimiter(database) for database in databases]
    outcomes: list[str] = []
    lock = threading.Lock()

    def send(limiter: SharedLimiter) -> None:
        try:
            limiter.admit("acme", POLICY, 1).release()
            outcome = "admitted"
        except LimitExceeded as refused:
            outcome = refused.code.value
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=send, args=(replicas[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("admitted") == 10 and outcomes.count("rate_limited") == 10


def test_streams_count_across_replicas_and_release(databases: tuple[Database, Database]) -> None:
    first, second = (SharedLimiter(database) for database in databases)
    policy = POLICY.model_copy(update={"max_concurrent_streams": 2})
    held = [first.admit("acme", policy, 1), second.admit("acme", policy, 1)]
    assert code_of(first, policy) is LimitCode.TOO_MANY_STREAMS
    assert first.open_streams("acme") == second.open_streams("acme") == 2
    held[0].release()
    held[0].release()  # idempotent
    assert second.open_streams("acme") == 1
    second.admit("acme", policy, 1).release()
    held[1].release()
    assert first.open_streams("acme") == 0


def test_the_streams_of_a_lost_replica_expire_unless_renewed(databases: tuple[Database, Database]) -> None:
    clock = Clock()
    lost, live = (SharedLimiter(database, clock=clock, lease_ttl_s=30) for database in databases)
    policy = POLICY.model_copy(update={"max_concurrent_streams": 2})
    lost.admit("acme", policy, 1)  # its replica dies: never released
    renewed = live.admit("acme", policy, 1)
    assert code_of(live, policy) is LimitCode.TOO_MANY_STREAMS
    clock.now += 20
    renewed.renew()
    clock.now += 20  # the lost lease is 40 s old, the renewed one 20 s
    assert live.open_streams("acme") == 1
    live.admit("acme", policy, 1).release()
    renewed.release()


def test_output_is_charged_after_refilling_to_the_present(databases: tuple[Database, Database]) -> None:
    clock = Clock()
    admitting, other = (SharedLimiter(database, clock=clock) for database in databases)
    lease = admitting.admit("acme", POLICY, 600)
    clock.now += 60.0
    lease.charge_output(1_200)
    lease.release()
    with pytest.raises(LimitExceeded) as refused:
        other.admit("acme", POLICY, 1)  # the next request, through another replica
    assert refused.value.code is LimitCode.TOKEN_LIMITED
    assert refused.value.retry_after_s == pytest.approx(60.1)


def test_a_refusal_charges_nothing(databases: tuple[Database, Database]) -> None:
    limiter = SharedLimiter(databases[0])
    policy = POLICY.model_copy(update={"requests_per_minute": 2, "max_concurrent_streams": 1})
    held = limiter.admit("acme", policy, 1)
    for _ in range(3):
        assert code_of(limiter, policy) is LimitCode.TOO_MANY_STREAMS
    held.release()
    limiter.admit("acme", policy, 1).release()  # the second request of the minute still fits
    assert code_of(limiter, policy) is LimitCode.RATE_LIMITED


def test_static_refusals_touch_no_state(databases: tuple[Database, Database]) -> None:
    limiter = SharedLimiter(databases[0])
    restricted = POLICY.model_copy(update={"allowed_regions": ("eu-west-1",), "requests_per_minute": 1})
    with pytest.raises(LimitExceeded) as refused:
        limiter.admit("acme", restricted, 1, region="us-west-1")
    assert refused.value.code is LimitCode.REGION_NOT_ALLOWED and refused.value.retry_after_s is None
    limiter.admit("acme", restricted, 1, region="eu-west-1").release()
