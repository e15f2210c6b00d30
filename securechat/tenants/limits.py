"""Per-tenant admission: request and token rates, concurrent streams. The contract and the in-memory limiter.

Both rates are token buckets (``buckets.TokenBucket``) whose capacity is one minute's allowance, so a tenant
may burst up to its per-minute limit and then proceeds at the steady rate. Tokens per minute are charged twice:
the prompt estimate at admission (so a burst of long prompts is refused before it costs anything) and the
output tokens when the caller reports them; output may put the bucket in debt, which delays the next admission
instead of cutting a stream that is already running. A request larger than a full bucket is admitted when the
bucket is full, else it could never run.

``Limiter`` is the contract the gateway uses. ``TenantLimiter`` (here) keeps the buckets in this process: one
gateway replica's view, so N replicas give a tenant up to N times its rates; it serves the development setting
(auth disabled, no database). ``SharedLimiter`` (``shared_limits``) keeps them in the tenant database, so every
replica on every node draws on one allowance. ``TenantLimiter`` is meant for one event loop: admission does
not await, so it is atomic there; it is not thread-safe. Its memory is bounded: a tenant whose buckets have
refilled and who has no open stream carries no information and is dropped; past ``max_tenants`` the least
recently seen idle tenants are dropped even if that forgives a little debt.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from securechat.logs import get_logger, log_event
from securechat.tenants.buckets import TokenBucket
from securechat.tenants.policy import TenantPolicy

logger = get_logger("tenants.limits")

_BYTES_PER_TOKEN = 4.0  # typical BPE text; the worker's tokenizer enforces the exact input limit


class LimitCode(StrEnum):
    """Why admission refused a request: content-free, one per limit."""

    RATE_LIMITED = "rate_limited"
    TOKEN_LIMITED = "token_limited"
    TOO_MANY_STREAMS = "too_many_streams"
    REGION_NOT_ALLOWED = "region_not_allowed"
    PROMPT_TOO_LONG = "prompt_too_long"
    MAX_NEW_TOKENS_EXCEEDED = "max_new_tokens_exceeded"


class LimitExceeded(Exception):
    """A refusal. ``retry_after_s`` is when a retry may succeed, or None when retrying the same request cannot."""

    def __init__(self, code: LimitCode, retry_after_s: float | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str | None:
        """The ``Retry-After`` value: whole seconds, rounded up, at least 1."""
        return None if self.retry_after_s is None else str(max(1, math.ceil(self.retry_after_s)))


def estimate_tokens(num_bytes: int) -> int:
    """A prompt-size estimate for admission, from its UTF-8 (or sealed) size in bytes."""
    return max(1, math.ceil(num_bytes / _BYTES_PER_TOKEN))


@dataclass(slots=True)
class _TenantState:
    requests: TokenBucket
    tokens: TokenBucket
    open_streams: int = 0


class StreamLease:
    """One admitted request's hold on a stream slot.

    Release it exactly once, with ``async with``/``with`` or ``release()``; later calls do nothing. A streaming
    HTTP response outlives the handler that admitted it, so the gateway releases in the body generator's
    ``finally``; should a lease still be dropped unreleased (a body that never started), ``__del__`` releases an
    in-memory lease as a last resort and logs ``stream_lease_leaked`` (a shared lease is left to expire: no
    database call from a garbage collector). ``charge_output`` also works after release, because the final
    token count often arrives with the stream's end. ``lease_id`` names a shared lease's row.
    """

    def __init__(self, limiter: Limiter, tenant_id: str, est_tokens: int, lease_id: str | None = None) -> None:
        self.tenant_id = tenant_id
        self.est_tokens = est_tokens
        self.lease_id = lease_id
        self.output_tokens = 0
        self._limiter = limiter
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def charge_output(self, num_tokens: int, input_tokens: int | None = None) -> None:
        """Charge generated tokens (may be called per chunk); ``input_tokens`` replaces the prompt estimate."""
        if num_tokens < 0 or (input_tokens is not None and input_tokens < 0):
            raise ValueError("token counts are non-negative")
        correction = 0
        if input_tokens is not None:
            correction, self.est_tokens = input_tokens - self.est_tokens, input_tokens
        self.output_tokens += num_tokens
        self._limiter._charge(self, num_tokens + correction)

    def renew(self) -> None:
        """Keep a long stream's slot (a shared lease expires ``lease_ttl_s`` after admission or renewal)."""
        if not self._released:
            self._limiter._renew(self)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self)

    async def __aenter__(self) -> StreamLease:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __enter__(self) -> StreamLease:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        if not getattr(self, "_released", True):
            log_event(logger, "stream_lease_leaked", level=logging.WARNING, tenant_id=self.tenant_id)
            if self._limiter.blocking:
                self._released = True  # its row expires on its own
            else:
                self.release()


class Limiter(ABC):
    """Admission for every tenant. ``blocking`` limiters (a database behind them) are called from a thread."""

    blocking: bool = False
    lease_ttl_s: float | None = None  # a shared lease's life without renewal; None: leases never expire

    @abstractmethod
    def admit(
        self,
        tenant_id: str,
        policy: TenantPolicy,
        est_tokens: int,
        *,
        region: str | None = None,
        max_new_tokens: int | None = None,
    ) -> StreamLease:
        """Admit one request or raise ``LimitExceeded``; nothing is charged for a refused request.

        ``max_new_tokens`` is what the client asked for, if it asked: a default filled in by the gateway should
        be capped at ``policy.max_new_tokens`` rather than checked, so a request without one is never refused.
        """

    @abstractmethod
    def open_streams(self, tenant_id: str) -> int: ...

    @abstractmethod
    def _charge(self, lease: StreamLease, num_tokens: int) -> None: ...

    @abstractmethod
    def _release(self, lease: StreamLease) -> None: ...

    def _renew(self, lease: StreamLease) -> None:  # noqa: B027 - in-memory leases do not expire
        """Push the lease's expiry on."""


def check_request(policy: TenantPolicy, est_tokens: int, region: str | None, max_new_tokens: int | None) -> None:
    """The refusals that need no state: region, prompt size, asked-for output. Raise ``LimitExceeded``."""
    if est_tokens < 0:
        raise ValueError("est_tokens is non-negative")
    if region is not None and not policy.allows_region(region):
        raise LimitExceeded(LimitCode.REGION_NOT_ALLOWED)
    if est_tokens > policy.max_prompt_tokens:
        raise LimitExceeded(LimitCode.PROMPT_TOO_LONG)
    if max_new_tokens is not None and max_new_tokens > policy.max_new_tokens:
        raise LimitExceeded(LimitCode.MAX_NEW_TOKENS_EXCEEDED)


def check_and_take(
    requests: TokenBucket,
    tokens: TokenBucket,
    open_streams: int,
    policy: TenantPolicy,
    est_tokens: int,
    stream_retry_after_s: float,
) -> None:
    """Refuse (``LimitExceeded``) or spend one request and ``est_tokens`` from buckets refilled to now."""
    if open_streams >= policy.max_concurrent_streams:
        raise LimitExceeded(LimitCode.TOO_MANY_STREAMS, stream_retry_after_s)
    wait_s = requests.wait_s(1)
    if wait_s > 0:
        raise LimitExceeded(LimitCode.RATE_LIMITED, wait_s)
    wait_s = tokens.wait_s(est_tokens)
    if wait_s > 0:
        raise LimitExceeded(LimitCode.TOKEN_LIMITED, wait_s)
    requests.take(1)
    tokens.take(est_tokens)


class TenantLimiter(Limiter):
    """Admission state for every tenant seen recently by this replica.

    ``clock`` is monotonic seconds (injectable for tests). ``too_many_streams`` carries ``stream_retry_after_s``
    as its hint: when a stream ends cannot be known in advance.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tenants: int = 10_000,
        sweep_interval_s: float = 10.0,
        stream_retry_after_s: float = 1.0,
    ) -> None:
        if max_tenants < 1:
            raise ValueError("max_tenants must be at least 1")
        self._clock = clock
        self._max_tenants = max_tenants
        self._sweep_interval_s = sweep_interval_s
        self._stream_retry_after_s = stream_retry_after_s
        self._states: OrderedDict[str, _TenantState] = OrderedDict()  # least recently seen first
        self._next_sweep = clock() + sweep_interval_s

    @property
    def num_tracked_tenants(self) -> int:
        return len(self._states)

    def open_streams(self, tenant_id: str) -> int:
        state = self._states.get(tenant_id)
        return 0 if state is None else state.open_streams

    def admit(
        self,
        tenant_id: str,
        policy: TenantPolicy,
        est_tokens: int,
        *,
        region: str | None = None,
        max_new_tokens: int | None = None,
    ) -> StreamLease:
        try:
            check_request(policy, est_tokens, region, max_new_tokens)
            now = self._clock()
            self._maybe_sweep(now)
            state = self._state(tenant_id, policy, now)
            check_and_take(
                state.requests, state.tokens, state.open_streams, policy, est_tokens, self._stream_retry_after_s
            )
            state.open_streams += 1
        except LimitExceeded as refusal:
            log_event(logger, "admission_refused", tenant_id=tenant_id, error_code=refusal.code.value)
            raise
        return StreamLease(self, tenant_id, est_tokens)

    def _state(self, tenant_id: str, policy: TenantPolicy, now: float) -> _TenantState:
        state = self._states.get(tenant_id)
        if state is None:
            if len(self._states) >= self._max_tenants:
                self._evict_oldest_idle()
            state = _TenantState(
                TokenBucket.full(policy.requests_per_minute, now), TokenBucket.full(policy.tokens_per_minute, now)
            )
            self._states[tenant_id] = state
        else:
            self._states.move_to_end(tenant_id)
            state.requests.refill(now, policy.requests_per_minute)
            state.tokens.refill(now, policy.tokens_per_minute)
        return state

    def _charge(self, lease: StreamLease, num_tokens: int) -> None:
        state = self._states.get(lease.tenant_id)
        if state is not None:  # else it was forgotten after its release: a late charge is dropped
            # Debt is capped at one minute's allowance, so one huge output cannot lock a tenant out for hours.
            state.tokens.charge(num_tokens, self._clock())

    def _release(self, lease: StreamLease) -> None:
        state = self._states.get(lease.tenant_id)
        if state is not None and state.open_streams > 0:
            state.open_streams -= 1

    def _maybe_sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop every tenant that has no open stream and whose buckets have refilled: O(tenants), every 10 s."""
        self._next_sweep = now + self._sweep_interval_s
        for tenant_id in [t for t, state in self._states.items() if _is_forgettable(state, now)]:
            del self._states[tenant_id]

    def _evict_oldest_idle(self) -> None:
        """Make room past the cap: the least recently seen tenant without an open stream goes (its debt too)."""
        victim = next((t for t, state in self._states.items() if state.open_streams == 0), None)
        if victim is not None:  # else every tracked tenant is streaming: bounded by the replica's capacity
            del self._states[victim]
            log_event(logger, "admission_state_evicted", tenant_id=victim)


def _is_forgettable(state: _TenantState, now: float) -> bool:
    """No open stream and both buckets full again: a fresh state would behave the same."""
    return state.open_streams == 0 and state.requests.is_full(now) and state.tokens.is_full(now)
