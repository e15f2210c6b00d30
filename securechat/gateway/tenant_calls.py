"""The tenancy as the gateway's event loop calls it: database calls in a thread, an outage as a 503.

With a tenant database every key lookup, policy read and admission is a round trip (to PostgreSQL, over the
network), so those calls run in a worker thread and the event loop keeps serving other streams, /healthz and
/readyz while one waits. The in-memory limiter of the development setting is called in place: its admission
is atomic because it never awaits. A database that cannot be reached answers 503 ``database_unavailable`` with
Retry-After to the requests that need it; admission is one transaction, so nothing of a refused or failed
admission is kept. After a stream, charging its output and releasing its lease are best effort: a lost
database costs the tenant's bucket that charge, and the lease expires by itself (``stream_lease_ttl_s``).
A request cancelled while its admission runs (the client went away) has its lease released as soon as the
admission returns, and a long stream renews its lease in the background, so a slow database never pauses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TypeVar

from securechat.db import DatabaseUnavailable
from securechat.errors import ErrorCode
from securechat.gateway.http_errors import HTTPError
from securechat.logs import get_logger, log_event
from securechat.tenants.auth import Credential
from securechat.tenants.limits import LimitExceeded, StreamLease
from securechat.tenants.oidc import IssuerUnavailable
from securechat.tenants.policy import TenantPolicy
from securechat.tenants.tenancy import Tenancy

logger = get_logger("gateway")

T = TypeVar("T")


class TenantCalls:
    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy
        self._background: set[asyncio.Future[None]] = set()  # renewals and releases nobody awaits
        ttl_s = tenancy.limiter.lease_ttl_s
        self.renew_interval_s = ttl_s / 3 if ttl_s is not None else None  # two renewals may fail in a row

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        if not self.tenancy.blocking:
            return function(*args)
        try:
            return await asyncio.to_thread(function, *args)
        except DatabaseUnavailable:
            log_event(logger, "database_unavailable", level=logging.WARNING, reason="tenant_database")
            raise HTTPError(ErrorCode.DATABASE_UNAVAILABLE) from None

    async def authenticate(self, authorization: str | None) -> Credential | None:
        """The caller's credential (``AuthError`` for a refused one); None when auth is disabled. A token's
        issuer keys may need fetching, so with issuers configured this always runs in a thread."""
        authenticator = self.tenancy.authenticator
        if not authenticator.required:
            return None
        try:
            if authenticator.tokens is not None and not self.tenancy.blocking:
                return await asyncio.to_thread(authenticator.authenticate, authorization)
            return await self._call(authenticator.authenticate, authorization)
        except IssuerUnavailable:
            log_event(logger, "issuer_unavailable", level=logging.WARNING)
            raise HTTPError(ErrorCode.ISSUER_UNAVAILABLE) from None

    async def policy(self, tenant_id: str) -> TenantPolicy:
        return await self._call(self.tenancy.policies.resolve, tenant_id)

    async def admit(
        self, tenant_id: str, policy: TenantPolicy, est_tokens: int, region: str, max_new_tokens: int | None
    ) -> StreamLease:
        def admit() -> StreamLease:
            return self.tenancy.limiter.admit(
                tenant_id, policy, est_tokens, region=region, max_new_tokens=max_new_tokens
            )

        try:
            if not self.tenancy.blocking:
                return admit()  # the in-memory limiter never awaits: atomic on the event loop
            admission = asyncio.ensure_future(self._call(admit))
            try:
                # Shielded: a cancelled request must not lose a lease the database already granted.
                return await asyncio.shield(admission)
            except asyncio.CancelledError:
                admission.add_done_callback(self._release_if_admitted)
                raise
        except LimitExceeded as refusal:
            raise HTTPError(ErrorCode(refusal.code.value), retry_after=refusal.retry_after_header) from None

    def _release_if_admitted(self, admission: asyncio.Future[StreamLease]) -> None:
        if admission.cancelled() or admission.exception() is not None:
            return
        self._in_background(self.settle(admission.result()))

    def _in_background(self, call: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(call)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self, lease: StreamLease, output_tokens: int | None = None) -> None:
        """Charge the stream's output (if any) and release its slot; never raises for a lost database."""

        def settle() -> None:
            try:
                if output_tokens is not None:
                    lease.charge_output(output_tokens)
            finally:
                lease.release()

        with contextlib.suppress(HTTPError):  # logged as database_unavailable; the lease expires on its own
            await self._call(settle)

    def renewal_due(self, last_renewed: float) -> bool:
        return self.renew_interval_s is not None and time.monotonic() - last_renewed >= self.renew_interval_s

    async def renew(self, lease: StreamLease) -> None:
        """Keep a long stream's slot; a failure leaves the lease to expire (the stream goes on)."""
        with contextlib.suppress(HTTPError):
            await self._call(lease.renew)

    def renew_in_background(self, lease: StreamLease) -> None:
        """``renew`` without waiting for it: the stream's next chunk never waits on the database."""
        self._in_background(self.renew(lease))
