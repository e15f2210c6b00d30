"""The worker replica's lifecycle as an explicit state machine.

    MODEL_LOADING ──▶ READY ──▶ BUSY ──▶ STREAMING ──▶ READY
          │             │        │ ▲         │
          └─────────────┴────────┴─┼─────────┴──▶ FAILED (terminal: Serve replaces the replica)
                                   └─ STREAMING ▶ BUSY when the streaming request ends while another waits
BUSY ▶ READY: a request ended before its first token (bad envelope body, cancelled, engine error).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class WorkerState(StrEnum):
    MODEL_LOADING = "MODEL_LOADING"
    READY = "READY"
    BUSY = "BUSY"
    STREAMING = "STREAMING"
    FAILED = "FAILED"


LEGAL_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.MODEL_LOADING: frozenset({WorkerState.READY, WorkerState.FAILED}),
    WorkerState.READY: frozenset({WorkerState.BUSY, WorkerState.FAILED}),
    WorkerState.BUSY: frozenset({WorkerState.STREAMING, WorkerState.READY, WorkerState.FAILED}),
    WorkerState.STREAMING: frozenset({WorkerState.READY, WorkerState.BUSY, WorkerState.FAILED}),
    WorkerState.FAILED: frozenset(),
}

TransitionListener = Callable[[WorkerState, WorkerState], None]


class IllegalTransition(RuntimeError):
    def __init__(self, current: WorkerState, target: WorkerState) -> None:
        super().__init__(f"illegal worker state transition {current} -> {target}")
        self.current = current
        self.target = target


class StateMachine:
    """Holds the current state, refuses illegal moves and tells listeners about every transition."""

    def __init__(self, initial: WorkerState = WorkerState.MODEL_LOADING) -> None:
        self._state = initial
        self._listeners: list[TransitionListener] = []

    @property
    def state(self) -> WorkerState:
        return self._state

    def subscribe(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def can_transition(self, target: WorkerState) -> bool:
        return target in LEGAL_TRANSITIONS[self._state]

    def transition(self, target: WorkerState) -> None:
        if not self.can_transition(target):
            raise IllegalTransition(self._state, target)
        previous, self._state = self._state, target
        for listener in self._listeners:
            listener(previous, target)
