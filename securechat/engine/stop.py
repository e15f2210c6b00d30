"""Stop strings in streamed text: end the answer before the first one, even when it spans chunks.

``StopMatcher.push`` takes each new piece of decoded text and returns what may be shown now, and whether a stop
string was found. It holds back only the longest tail that could still begin a stop string, so text that cannot
be part of one is never delayed, and a stop split across pieces (or tokens) is still found. The stop string
itself, and anything after it, is never returned.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """The text that is now safe to show (may be empty). After a stop, nothing more."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        found = [index for index in (buffer.find(stop) for stop in self._stops) if index >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return buffer[: min(found)]
        keep = self._longest_partial_stop(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """At the end of the answer: what was held back (it never completed a stop string)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial_stop(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:length]):
                    best = length
                    break
        return best
