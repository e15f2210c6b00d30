import itertools

import pytest

from securechat.state import LEGAL_TRANSITIONS, IllegalTransition, StateMachine, WorkerState

ALL_PAIRS = list(itertools.product(WorkerState, WorkerState))


@pytest.mark.parametrize(("start", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_every_transition_is_either_legal_or_refused(start: WorkerState, target: WorkerState) -> None:
    machine = StateMachine(initial=start)
    seen: list[tuple[WorkerState, WorkerState]] = []
    machine.subscribe(lambda a, b: seen.append((a, b)))
    if target in LEGAL_TRANSITIONS[start]:
        machine.transition(target)
        assert machine.state is target
        assert seen == [(start, target)]
    else:
        with pytest.raises(IllegalTransition):
            machine.transition(target)
        assert machine.state is start
        assert seen == []


def test_the_documented_happy_path() -> None:
    machine = StateMachine()
    for state in ("READY", "BUSY", "STREAMING", "READY"):
        machine.transition(WorkerState(state))
    assert machine.state is WorkerState.READY


def test_failed_is_terminal_and_reachable_from_every_live_state() -> None:
    assert LEGAL_TRANSITIONS[WorkerState.FAILED] == frozenset()
    for state in WorkerState:
        if state is not WorkerState.FAILED:
            assert WorkerState.FAILED in LEGAL_TRANSITIONS[state]


def test_illegal_examples_from_the_contract() -> None:
    assert not StateMachine(WorkerState.MODEL_LOADING).can_transition(WorkerState.BUSY)
    assert not StateMachine(WorkerState.READY).can_transition(WorkerState.STREAMING)
    assert not StateMachine(WorkerState.READY).can_transition(WorkerState.MODEL_LOADING)
