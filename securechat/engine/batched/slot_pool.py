"""KV slot bookkeeping (no torch): which rows of the preallocated cache are free."""

from __future__ import annotations


class SlotPool:
    """Hands out KV cache rows ``0 .. num_slots - 1``; lowest free index first, so runs are reproducible."""

    def __init__(self, num_slots: int) -> None:
        if num_slots < 1:
            raise ValueError("num_slots must be >= 1")
        self.num_slots = num_slots
        self._free = list(range(num_slots - 1, -1, -1))  # a stack: pop() gives the lowest index
        self._used: set[int] = set()

    @property
    def num_free(self) -> int:
        return len(self._free)

    def can_allocate(self) -> bool:
        return bool(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise RuntimeError("no free kv slot")
        slot = self._free.pop()
        self._used.add(slot)
        return slot

    def free(self, slot: int) -> None:
        if slot not in self._used:
            raise RuntimeError("kv slot freed twice")
        self._used.remove(slot)
        self._free.append(slot)
        self._free.sort(reverse=True)
