"""Continuous batching at step boundaries (no torch).

Every engine step is either a *prefill* step or a *decode* step, never a mix:

- Admission: while a request waits, a KV slot is free and fewer than ``max_batch_size`` sequences run, the
  oldest waiting sequence takes a slot and joins ``running``, with the other choices of its prompt (all or
  none). KV capacity bounds admission: one slot holds a whole sequence (``max_model_len`` tokens), so a
  sequence admitted can always run to its end.
- Policy: if this step admitted anything, the step prefills exactly those new sequences (their prompts go
  through the model and each gets its first token); otherwise the step decodes one token for every running
  sequence. So a request arriving mid-batch waits at most one decode step, and the running ones pause for
  one prefill step (nano-vllm's "prefill first, else decode all running").
- Finished (EOS or budget) and aborted sequences leave ``running`` and free their slot at the step boundary;
  the next ``schedule`` can give that slot to a waiting request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from securechat.engine.batched.sequence import Sequence, SequenceStatus
from securechat.engine.batched.slot_pool import SlotPool


@dataclass(frozen=True, slots=True)
class ScheduledBatch:
    seqs: list[Sequence]
    is_prefill: bool


class Scheduler:
    def __init__(self, max_batch_size: int, slots: SlotPool, eos_token_ids: Collection[int], disable_eos: bool) -> None:
        self.max_batch_size = max_batch_size
        self.slots = slots
        self.eos_token_ids = frozenset(eos_token_ids)
        self.disable_eos = disable_eos
        self.waiting: deque[Sequence] = deque()
        self.running: deque[Sequence] = deque()

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def abort(self, seq_id: int) -> Sequence | None:
        """Drop a waiting or running sequence (its consumer went away); frees its slot at once."""
        for queue in (self.waiting, self.running):
            for seq in queue:
                if seq.seq_id == seq_id:
                    queue.remove(seq)
                    self._release(seq, SequenceStatus.ABORTED)
                    return seq
        return None

    def schedule(self) -> ScheduledBatch | None:
        """The next step: prefill of the newly admitted sequences, else decode of all running; None when idle."""
        admitted: list[Sequence] = []
        while self.waiting:
            # A group of choices (n > 1) comes in together, so its prompt is prefilled once; one larger than
            # the batch can ever be comes in as far as it fits, and the rest prefill on their own. So do members
            # that are not here: still on their way to the engine process (its messages come one at a time,
            # and it may step between them), or aborted.
            need = min(self._members_waiting(), self.slots.num_slots, self.max_batch_size)
            if self.slots.num_free < need or len(self.running) + need > self.max_batch_size:
                break
            for _ in range(need):
                seq = self.waiting.popleft()
                seq.slot = self.slots.allocate()
                seq.status = SequenceStatus.RUNNING
                self.running.append(seq)
                admitted.append(seq)
        if admitted:
            return ScheduledBatch(admitted, is_prefill=True)
        if self.running:
            return ScheduledBatch(list(self.running), is_prefill=False)
        return None

    def _members_waiting(self) -> int:
        """How many of the first waiting sequence's group wait right behind it (itself included)."""
        leader = self.waiting[0]
        members = 1
        while members < min(leader.group_size, len(self.waiting)):
            if self.waiting[members].prefill_from != leader.seq_id:
                break
            members += 1
        return members

    def postprocess(self, seqs: list[Sequence], token_ids: list[int]) -> list[Sequence]:
        """Append each sequence's new token; retire those that hit EOS or their budget. Returns the retired."""
        finished: list[Sequence] = []
        for seq, token_id in zip(seqs, token_ids, strict=True):
            seq.output_ids.append(token_id)
            hit_eos = not self.disable_eos and token_id in self.eos_token_ids
            # A constrained sequence ends with its grammar (its stop token), EOS disabled or not.
            hit_eos = hit_eos or (seq.matcher is not None and seq.matcher.is_terminated())
            if hit_eos or len(seq.output_ids) >= seq.max_new_tokens:
                self.running.remove(seq)
                self._release(seq, SequenceStatus.FINISHED)
                finished.append(seq)
        return finished

    def _release(self, seq: Sequence, status: SequenceStatus) -> None:
        if seq.slot is not None:
            self.slots.free(seq.slot)
            seq.slot = None
        seq.status = status
