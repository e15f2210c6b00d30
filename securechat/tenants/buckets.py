"""The token bucket both limiters use: a minute's allowance that refills continuously. Pure arithmetic.

Capacity is one minute's allowance (``per_minute``); the level refills at ``per_minute / 60`` per second up to
capacity and may go negative (debt, capped at one minute's allowance), which delays the next admission instead
of cutting a stream that is already running. Every change of the level first brings it to the present
(``refill``): a charge applied to a stale level would count the idle time before it as refill a second time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    capacity: float
    level: float
    updated: float  # seconds (any clock, as long as it is always the same one)

    @classmethod
    def full(cls, per_minute: int, now: float) -> TokenBucket:
        return cls(float(per_minute), float(per_minute), now)

    @property
    def per_s(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float, per_minute: int | None = None) -> None:
        """Bring the level to ``now``; a changed policy keeps what was used this minute, not the level."""
        if per_minute is not None and per_minute != self.capacity:
            self.level = max(self.level + per_minute - self.capacity, -float(per_minute))
            self.capacity = float(per_minute)
        self.level, self.updated = self.level_at(now), max(self.updated, now)

    def level_at(self, now: float) -> float:
        elapsed = max(0.0, now - self.updated)  # a clock that steps back never refills
        return min(self.capacity, self.level + elapsed * self.per_s)

    def wait_s(self, cost: float) -> float:
        """Seconds until ``cost`` (capped at capacity, else a big request could never run) is available."""
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.per_s

    def take(self, cost: float) -> None:
        """Spend ``cost`` now (after ``refill`` and a zero ``wait_s``)."""
        self.level -= cost

    def charge(self, cost: float, now: float) -> None:
        """Spend ``cost`` after the fact (output tokens, a corrected estimate; negative refunds): refill to
        ``now`` first, then keep the level within one minute's debt and one minute's credit."""
        self.refill(now)
        self.level = min(self.capacity, max(self.level - cost, -self.capacity))

    def is_full(self, now: float) -> bool:
        return self.level_at(now) >= self.capacity
