"""TenantCalls on a shared limiter: a request cancelled mid-admission keeps no lease, and a slow renewal never
holds a stream back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from securechat.db.sqlite import SQLiteDatabase
from securechat.gateway.tenant_calls import TenantCalls
from securechat.tenants import db as tenant_schema
from securechat.tenants.auth import Authenticator, AuthSettings
from securechat.tenants.limits import StreamLease
from securechat.tenants.policy import PolicyResolver, TenantPolicy
from securechat.tenants.shared_limits import SharedLimiter
from securechat.tenants.tenancy import Tenancy

POLICY = TenantPolicy(requests_per_minute=100, max_concurrent_streams=5)


class SlowLimiter(SharedLimiter):
    """The database answers, but only after ``delay_s`` (a busy PostgreSQL across the network)."""

    delay_s = 0.0
    renewals = 0

    def admit(self, *args: object, **kwargs: object) -> StreamLease:
        time.sleep(self.delay_s)
        return super().admit(*args, **kwargs)  # type: ignore[arg-type]

    def _renew(self, lease: StreamLease) -> None:
        time.sleep(self.delay_s)
        super()._renew(lease)
        self.renewals += 1


def tenant_calls(tmp_path: Path) -> tuple[TenantCalls, SlowLimiter]:
    database = SQLiteDatabase(tmp_path / "tenants.sqlite3")
    tenant_schema.migrate(database)
    limiter = SlowLimiter(database, lease_ttl_s=30)
    tenancy = Tenancy(
        authenticator=Authenticator(AuthSettings(mode="disabled"), None),
        policies=PolicyResolver(POLICY, {}, None),
        limiter=limiter,
        store=None,
        database=database,
    )
    return TenantCalls(tenancy), limiter


def test_a_request_cancelled_during_admission_leaves_no_lease(tmp_path: Path) -> None:
    calls, limiter = tenant_calls(tmp_path)
    limiter.delay_s = 0.3

    async def scenario() -> int:
        admission = asyncio.ensure_future(calls.admit("acme", POLICY, 1, "r", None))
        await asyncio.sleep(0.05)  # the client goes away while the database works
        admission.cancel()
        await asyncio.gather(admission, return_exceptions=True)
        assert admission.cancelled()
        await asyncio.sleep(0.6)  # the admission commits, then its lease is released in the background
        return limiter.open_streams("acme")

    assert asyncio.run(scenario()) == 0


def test_a_slow_renewal_does_not_hold_the_stream_back(tmp_path: Path) -> None:
    calls, limiter = tenant_calls(tmp_path)

    async def scenario() -> float:
        lease = await calls.admit("acme", POLICY, 1, "r", None)
        limiter.delay_s = 0.5
        started = time.monotonic()
        calls.renew_in_background(lease)
        returned_after = time.monotonic() - started
        await asyncio.sleep(0.8)  # the renewal finishes on its own
        assert limiter.renewals == 1
        limiter.delay_s = 0.0
        await calls.settle(lease)
        return returned_after

    assert asyncio.run(scenario()) < 0.05
    assert limiter.open_streams("acme") == 0
