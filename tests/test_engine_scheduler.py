"""The batched engine's scheduler: groups of choices (n > 1) admitted as far as their members have arrived."""

from __future__ import annotations

from securechat.engine.base import SamplingParams
from securechat.engine.batched.scheduler import Scheduler
from securechat.engine.batched.sequence import Sequence
from securechat.engine.batched.slot_pool import SlotPool


def _group(n: int) -> list[Sequence]:
    leader = Sequence([1, 2, 3], SamplingParams(max_new_tokens=4), 4)
    leader.group_size = n
    followers = [Sequence([1, 2, 3], SamplingParams(max_new_tokens=4), 4) for _ in range(n - 1)]
    for follower in followers:
        follower.prefill_from = leader.seq_id
    return [leader, *followers]


def _scheduler() -> Scheduler:
    return Scheduler(max_batch_size=8, slots=SlotPool(8), eos_token_ids=(), disable_eos=True)


def test_a_whole_group_is_prefilled_together() -> None:
    scheduler = _scheduler()
    group = _group(3)
    for seq in group:
        scheduler.add(seq)
    batch = scheduler.schedule()
    assert batch is not None and batch.is_prefill and batch.seqs == group


def test_a_group_whose_members_have_not_all_arrived_admits_those_that_have() -> None:
    """The engine process gets a group's members one message at a time and may step between two of them: the
    leader and one follower of three are waiting, then the last follower comes (it prefills on its own)."""
    scheduler = _scheduler()
    leader, first, last = _group(3)
    scheduler.add(leader)
    scheduler.add(first)
    batch = scheduler.schedule()
    assert batch is not None and batch.seqs == [leader, first]
    scheduler.add(last)
    batch = scheduler.schedule()
    assert batch is not None and batch.is_prefill and batch.seqs == [last]


def test_a_group_with_an_aborted_member_still_runs() -> None:
    scheduler = _scheduler()
    leader, first, second = _group(3)
    for seq in (leader, first, second):
        scheduler.add(seq)
    scheduler.abort(first.seq_id)
    batch = scheduler.schedule()
    assert batch is not None and batch.seqs == [leader, second]
