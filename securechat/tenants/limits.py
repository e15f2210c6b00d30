"""Per-tenant admission for one gateway replica: request and token rates, concurrent streams.

Both rates are token buckets whose capacity is one minute's allowance and which refill continuously, so a
tenant may burst up to its per-minute limit and then proceeds at the steady rate. Tokens per minute are charged
twice: the prompt estimate at admission (so a burst of long prompts is refused before it costs anything) and the
output tokens when the caller reports them; the bucket may go negative (debt), which delays the next admission
instead of cutting a stream that is already running. A request larger than a full bucket is admitted when the
bucket is full, else it could never run.

Limits are per replica: with N gateway replicas a tenant gets up to N times its rates (divide the policy by N,
or move the buckets to a shared store, when that matters). The limiter is meant for one event loop: admission
does not await, so it is atomic there; it is not thread-safe. Memory is bounded: a tenant whose buckets have
refilled and who has no open stream carries no information and is dropped; past ``max_tenants`` the least
recently seen idle tenants are dropped even if that forgives a little debt.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from securechat.logs import get_logger, log_event
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
class _Bucket:
    capacity: float
    per_s: float
    level: float
    updated: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> _Bucket:
        return cls(float(per_minute), per_minute / 60.0, float(per_minute), now)

    def refill(self, now: float, per_minute: int) -> None:
        if per_minute != self.capacity:  # a policy edit: keep what was used this minute, not the level
            self.level = max(self.level + per_minute - self.capacity, -float(per_minute))
            self.capacity, self.per_s = float(per_minute), per_minute / 60.0
        self.level, self.updated = self.level_at(now), now

    def level_at(self, now: float) -> float:
        elapsed = max(0.0, now - self.updated)  # a clock that steps back never refills
        return min(self.capacity, self.level + elapsed * self.per_s)

    def wait_s(self, cost: float) -> float:
        """Seconds until ``cost`` (capped at capacity) is available; 0 when it is now."""
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.per_s


@dataclass(slots=True)
class _TenantState:
    requests: _Bucket
    tokens: _Bucket
    open_streams: int = 0


class StreamLease:
    """One admitted request's hold on a stream slot.

    Release it exactly once, with ``async with``/``with`` or ``release()``; later calls do nothing. A streaming
    HTTP response outlives the handler that admitted it, so the gateway releases in the body generator's
    ``finally``; should a lease still be dropped unreleased (a body that never started), ``__del__`` releases it
    as a last resort and logs ``stream_lease_leaked``. ``charge_output`` also works after release, because the
    final token count often arrives with the stream's end.
    """

    def __init__(self, limiter: TenantLimiter, tenant_id: str, est_tokens: int) -> None:
        self.tenant_id = tenant_id
        self.est_tokens = est_tokens
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
        self._limiter._charge(self.tenant_id, num_tokens + correction)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self.tenant_id)

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
            self.release()


class TenantLimiter:
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
        """Admit one request or raise ``LimitExceeded``; nothing is charged for a refused request.

        ``max_new_tokens`` is what the client asked for, if it asked: a default filled in by the gateway should
        be capped at ``policy.max_new_tokens`` rather than checked, so a request without one is never refused.
        """
        if est_tokens < 0:
            raise ValueError("est_tokens is non-negative")
        try:
            self._check_request(policy, est_tokens, region, max_new_tokens)
            now = self._clock()
            self._maybe_sweep(now)
            state = self._state(tenant_id, policy, now)
            self._check_and_charge(state, policy, est_tokens)
        except LimitExceeded as refusal:
            log_event(logger, "admission_refused", tenant_id=tenant_id, error_code=refusal.code.value)
            raise
        return StreamLease(self, tenant_id, est_tokens)

    @staticmethod
    def _check_request(policy: TenantPolicy, est_tokens: int, region: str | None, max_new_tokens: int | None) -> None:
        if region is not None and not policy.allows_region(region):
            raise LimitExceeded(LimitCode.REGION_NOT_ALLOWED)
        if est_tokens > policy.max_prompt_tokens:
            raise LimitExceeded(LimitCode.PROMPT_TOO_LONG)
        if max_new_tokens is not None and max_new_tokens > policy.max_new_tokens:
            raise LimitExceeded(LimitCode.MAX_NEW_TOKENS_EXCEEDED)

    def _check_and_charge(self, state: _TenantState, policy: TenantPolicy, est_tokens: int) -> None:
        if state.open_streams >= policy.max_concurrent_streams:
            raise LimitExceeded(LimitCode.TOO_MANY_STREAMS, self._stream_retry_after_s)
        wait_s = state.requests.wait_s(1)
        if wait_s > 0:
            raise LimitExceeded(LimitCode.RATE_LIMITED, wait_s)
        wait_s = state.tokens.wait_s(est_tokens)
        if wait_s > 0:
            raise LimitExceeded(LimitCode.TOKEN_LIMITED, wait_s)
        state.requests.level -= 1
        state.tokens.level -= est_tokens
        state.open_streams += 1

    def _state(self, tenant_id: str, policy: TenantPolicy, now: float) -> _TenantState:
        state = self._states.get(tenant_id)
        if state is None:
            if len(self._states) >= self._max_tenants:
                self._evict_oldest_idle()
            state = _TenantState(
                _Bucket.full(policy.requests_per_minute, now), _Bucket.full(policy.tokens_per_minute, now)
            )
            self._states[tenant_id] = state
        else:
            self._states.move_to_end(tenant_id)
            state.requests.refill(now, policy.requests_per_minute)
            state.tokens.refill(now, policy.tokens_per_minute)
        return state

    def _charge(self, tenant_id: str, num_tokens: int) -> None:
        state = self._states.get(tenant_id)
        if state is not None:  # else it was forgotten after its release: a late charge is dropped
            bucket = state.tokens
            # Debt is capped at one minute's allowance, so one huge output cannot lock a tenant out for hours.
            bucket.level = min(bucket.capacity, max(bucket.level - num_tokens, -bucket.capacity))

    def _release(self, tenant_id: str) -> None:
        state = self._states.get(tenant_id)
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
    buckets = (state.requests, state.tokens)
    return state.open_streams == 0 and all(bucket.level_at(now) >= bucket.capacity for bucket in buckets)
