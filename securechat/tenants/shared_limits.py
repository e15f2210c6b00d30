"""``SharedLimiter``: the tenant's buckets and open streams in the tenant database, shared by every replica.

Why the database (and not a Serve deployment or a cache server): the tenant database is already the one place
every gateway replica on every node must reach for keys and policies, so the limits add no new component and
no new way to fail; its transactions make each admission exact (a row lock orders the gateways' admissions of
one tenant), and its state survives the loss of any Ray node, which a limiter actor would not. The price is a
short transaction per admission and one per finished stream (well under a millisecond on a local PostgreSQL;
the request path already pays a round trip for the key lookup).

Admission is one transaction: bring both buckets to the present, count the tenant's live stream leases, refuse
(and roll back: nothing charged) or spend and insert a lease row. A lease expires ``lease_ttl_s`` after its
admission or its last ``renew``, so the streams of a gateway replica that died stop counting by themselves.
Times are wall-clock seconds (``time.time``): gateway nodes must keep synchronised clocks, as attestation's
freshness checks already require.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from securechat.db import Database, Transaction
from securechat.logs import get_logger, log_event
from securechat.tenants.buckets import TokenBucket
from securechat.tenants.limits import Limiter, LimitExceeded, StreamLease, check_and_take, check_request
from securechat.tenants.policy import TenantPolicy

logger = get_logger("tenants.limits")

DEFAULT_LEASE_TTL_S = 120.0


class SharedLimiter(Limiter):
    blocking = True
    lease_ttl_s: float

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], float] = time.time,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        stream_retry_after_s: float = 1.0,
    ) -> None:
        self._db = database
        self._clock = clock
        self.lease_ttl_s: float = lease_ttl_s
        self._stream_retry_after_s = stream_retry_after_s

    def admit(
        self,
        tenant_id: str,
        policy: TenantPolicy,
        est_tokens: int,
        *,
        region: str | None = None,
        max_new_tokens: int | None = None,
    ) -> StreamLease:
        lease_id = secrets.token_hex(16)
        try:
            check_request(policy, est_tokens, region, max_new_tokens)
            with self._db.transaction() as tx:
                now = self._clock()
                requests, tokens = self._buckets(tx, tenant_id, policy, now)
                tx.execute("DELETE FROM tenant_streams WHERE tenant_id = ? AND expires_at <= ?", (tenant_id, now))
                (open_streams,) = tx.execute(
                    "SELECT COUNT(*) FROM tenant_streams WHERE tenant_id = ?", (tenant_id,)
                ).one()
                check_and_take(requests, tokens, open_streams, policy, est_tokens, self._stream_retry_after_s)
                self._save(tx, tenant_id, requests, tokens)
                tx.execute(
                    "INSERT INTO tenant_streams (lease_id, tenant_id, expires_at) VALUES (?, ?, ?)",
                    (lease_id, tenant_id, now + self.lease_ttl_s),
                )
        except LimitExceeded as refusal:
            log_event(logger, "admission_refused", tenant_id=tenant_id, error_code=refusal.code.value)
            raise
        return StreamLease(self, tenant_id, est_tokens, lease_id)

    def open_streams(self, tenant_id: str) -> int:
        with self._db.transaction(write=False) as tx:
            (count,) = tx.execute(
                "SELECT COUNT(*) FROM tenant_streams WHERE tenant_id = ? AND expires_at > ?", (tenant_id, self._clock())
            ).one()
        return int(count)

    def _charge(self, lease: StreamLease, num_tokens: int) -> None:
        with self._db.transaction() as tx:
            row = self._locked(tx, lease.tenant_id)
            if row is None:
                return
            requests, tokens = row
            now = self._clock()
            requests.refill(now)
            tokens.charge(num_tokens, now)  # refills to now first: idle time is never counted twice
            self._save(tx, lease.tenant_id, requests, tokens)

    def _release(self, lease: StreamLease) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM tenant_streams WHERE lease_id = ?", (lease.lease_id,))

    def _renew(self, lease: StreamLease) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE tenant_streams SET expires_at = ? WHERE lease_id = ?",
                (self._clock() + self.lease_ttl_s, lease.lease_id),
            )

    def _buckets(
        self, tx: Transaction, tenant_id: str, policy: TenantPolicy, now: float
    ) -> tuple[TokenBucket, TokenBucket]:
        """The tenant's buckets, locked until commit and refilled to ``now`` under ``policy`` (full if new)."""
        tx.execute(
            "INSERT INTO tenant_limits (tenant_id, requests_capacity, requests_level, tokens_capacity, tokens_level,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO NOTHING",
            (
                tenant_id,
                float(policy.requests_per_minute),
                float(policy.requests_per_minute),
                float(policy.tokens_per_minute),
                float(policy.tokens_per_minute),
                now,
            ),
        )
        row = self._locked(tx, tenant_id)
        assert row is not None  # inserted above, or there already
        requests, tokens = row
        requests.refill(now, policy.requests_per_minute)
        tokens.refill(now, policy.tokens_per_minute)
        return requests, tokens

    def _locked(self, tx: Transaction, tenant_id: str) -> tuple[TokenBucket, TokenBucket] | None:
        row = tx.execute(
            "SELECT requests_capacity, requests_level, tokens_capacity, tokens_level, updated_at FROM tenant_limits"
            f" WHERE tenant_id = ?{self._db.dialect.for_update}",
            (tenant_id,),
        ).first()
        if row is None:
            return None
        updated = float(row[4])
        return TokenBucket(float(row[0]), float(row[1]), updated), TokenBucket(float(row[2]), float(row[3]), updated)

    @staticmethod
    def _save(tx: Transaction, tenant_id: str, requests: TokenBucket, tokens: TokenBucket) -> None:
        tx.execute(
            "UPDATE tenant_limits SET requests_capacity = ?, requests_level = ?, tokens_capacity = ?,"
            " tokens_level = ?, updated_at = ? WHERE tenant_id = ?",
            (
                requests.capacity,
                requests.level,
                tokens.capacity,
                tokens.level,
                max(requests.updated, tokens.updated),
                tenant_id,
            ),
        )
