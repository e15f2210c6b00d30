"""Stop strings in streamed text: found across pieces, never returned, text that cannot start one not delayed."""

from __future__ import annotations

import pytest

from securechat.engine.stop import StopMatcher


def run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    matcher = StopMatcher(stops)
    shown = [matcher.push(piece) for piece in pieces]
    shown.append(matcher.flush())
    return shown, matcher.stopped


def test_a_stop_split_across_pieces_is_found_and_not_returned() -> None:
    shown, stopped = run(["\n\n"], ["Hello", " world\n", "\nmore", " text"])
    assert "".join(shown) == "Hello world" and stopped
    assert shown[:2] == ["Hello", " world"]  # only the possible start of the stop ("\n") was held back


def test_the_earliest_of_several_stops_wins() -> None:
    shown, stopped = run(["END", "x"], ["abcxENDdef"])
    assert "".join(shown) == "abc" and stopped


def test_text_that_cannot_start_a_stop_is_never_held() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.push("plain words ") == "plain words "
    assert matcher.push("ST") == ""  # could be the start of STOP
    assert matcher.push("AY") == "STAY"
    assert matcher.flush() == "" and not matcher.stopped


def test_held_text_is_released_at_the_end() -> None:
    shown, stopped = run(["ABC"], ["xxAB"])
    assert shown == ["xx", "AB"] and not stopped


@pytest.mark.parametrize("pieces", [["a", "b", "c"], ["abc"], ["", "abc", ""]])
def test_no_stops_pass_everything_through(pieces: list[str]) -> None:
    assert "".join(run([], pieces)[0]) == "abc"


def test_nothing_after_a_stop() -> None:
    matcher = StopMatcher(["|"])
    assert matcher.push("a|b") == "a" and matcher.push("more") == "" and matcher.flush() == ""
