"""The worker's replay memory: once per envelope, only before it expires, in bounded memory."""

from __future__ import annotations

import pytest

from securechat.replay import ReplayGuard, ReplayVerdict

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_an_envelope_runs_once_and_only_before_it_expires() -> None:
    clock = Clock()
    guard = ReplayGuard(max_ttl_s=600, max_entries=10, clock=clock)
    assert guard.admit("t1", "r1", int(NOW) + 120) is ReplayVerdict.ADMITTED
    assert guard.admit("t1", "r1", int(NOW) + 120) is ReplayVerdict.SEEN
    assert guard.admit("t2", "r1", int(NOW) + 120) is ReplayVerdict.ADMITTED  # another tenant's id
    assert guard.admit("t1", "r2", int(NOW)) is ReplayVerdict.EXPIRED
    assert guard.admit("t1", "r3", int(NOW) + 601) is ReplayVerdict.TOO_LONG
    clock.now += 121
    assert guard.admit("t1", "r1", int(NOW) + 120) is ReplayVerdict.EXPIRED  # forgotten, but expired too
    assert len(guard) == 0  # expired entries are dropped


def test_memory_is_bounded_and_what_it_had_to_forget_stays_refused() -> None:
    guard = ReplayGuard(max_ttl_s=600, max_entries=3, clock=Clock())
    for index in range(5):
        assert guard.admit("t", f"r{index}", int(NOW) + 100 + index) is ReplayVerdict.ADMITTED
    assert len(guard) == 3 and guard.floor == int(NOW) + 101
    assert guard.admit("t", "r0", int(NOW) + 100) is ReplayVerdict.FORGOTTEN  # dropped for room: refused
    assert guard.admit("t", "r1", int(NOW) + 101) is ReplayVerdict.FORGOTTEN
    assert guard.admit("t", "r4", int(NOW) + 104) is ReplayVerdict.SEEN
    assert guard.admit("t", "new", int(NOW) + 120) is ReplayVerdict.ADMITTED  # later envelopes are unaffected


@pytest.mark.parametrize(("max_ttl_s", "max_entries"), [(0, 10), (10, 0)])
def test_bounds_must_be_positive(max_ttl_s: float, max_entries: int) -> None:
    with pytest.raises(ValueError):
        ReplayGuard(max_ttl_s, max_entries)
