import json
import os

import pytest

from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.stream import (
    ErrorEvent,
    FinalEvent,
    ResponseOpener,
    ResponseSealer,
    StartEvent,
    TextEvent,
    make_error_frame,
)
from tests.test_envelope import VECTORS

DEK = os.urandom(32)


def frames_for(request_id: str, chunks: list[str], dek: bytes = DEK) -> list[bytes]:
    sealer = ResponseSealer(dek, request_id)
    return [
        sealer.start_frame,
        *(sealer.seal_chunk(c) for c in chunks),
        sealer.seal_final({"output_tokens": len(chunks)}),
    ]


def read_all(frames: list[bytes], request_id: str = "r1", dek: bytes = DEK) -> list[object]:
    opener = ResponseOpener.for_request(dek, request_id)
    events = [opener.open(frame) for frame in frames]
    opener.finish()
    return events


def test_round_trip() -> None:
    events = read_all(frames_for("r1", ["a", "ß✓", ""]))
    assert events == [
        StartEvent(),
        TextEvent("a"),
        TextEvent("ß✓"),
        TextEvent(""),
        FinalEvent({"output_tokens": 3}, None),
    ]


def test_truncated_stream_is_detected() -> None:
    with pytest.raises(InvalidCiphertext):
        read_all(frames_for("r1", ["a", "b"])[:-1])


def test_reordered_frames_are_refused() -> None:
    start, a, b, final = frames_for("r1", ["a", "b"])
    with pytest.raises(InvalidCiphertext):
        read_all([start, b, a, final])


def test_replayed_frame_is_refused() -> None:
    start, a, b, final = frames_for("r1", ["a", "b"])
    with pytest.raises(InvalidCiphertext):
        read_all([start, a, a, b, final])


def test_frames_from_another_request_are_refused() -> None:
    other = frames_for("r2", ["x"])
    mine = frames_for("r1", ["a"])
    with pytest.raises(InvalidCiphertext):
        read_all([mine[0], other[1], mine[2]])
    # Same DEK but another request id: the derived key and AAD differ.
    with pytest.raises(InvalidCiphertext):
        read_all(frames_for("r2", ["a"]), request_id="r1")


def test_each_run_of_an_envelope_has_its_own_key() -> None:
    """A host replaying an envelope gets a new salt, so no (key, nonce) pair is ever used twice and frames of
    one run cannot be spliced into another."""
    first, second = frames_for("r1", ["same text"]), frames_for("r1", ["same text"])
    assert first[0] != second[0] and first[1] != second[1]
    with pytest.raises(InvalidCiphertext):
        read_all([first[0], second[1], second[2]])


def test_data_before_the_start_frame_and_a_second_start_are_refused() -> None:
    start, a, final = frames_for("r1", ["a"])
    with pytest.raises(InvalidCiphertext):
        read_all([a, final])
    with pytest.raises(InvalidCiphertext):
        read_all([start, start, a, final])
    with pytest.raises(InvalidCiphertext):  # a substituted salt only yields a key nothing verifies under
        read_all([bytes([0x03]) + b"\0" * 32, a, final])


def test_final_flag_cannot_be_forged() -> None:
    start, a, _, _ = frames_for("r1", ["a", "b"])
    forged = a[:1] + b"\x01" + a[2:]  # set final on a chunk frame
    with pytest.raises(InvalidCiphertext):
        read_all([start, forged])


def test_frames_after_final_are_refused() -> None:
    frames = frames_for("r1", ["a"])
    with pytest.raises(InvalidCiphertext):
        read_all([*frames, frames[1]])


def test_error_frame_ends_the_stream_with_a_known_code() -> None:
    frames = [*frames_for("r1", ["a"])[:2], make_error_frame(ErrorCode.WORKER_LOST, "r1")]
    events = read_all(frames)
    assert events[-1] == ErrorEvent(code="worker_lost", request_id="r1")


def test_unknown_error_codes_are_not_echoed() -> None:
    frame = b"\x02" + json.dumps({"code": "my prompt was: hello", "request_id": "r1"}).encode()
    opener = ResponseOpener.for_request(DEK, "r1")
    assert opener.open(frame) == ErrorEvent(code="internal_error", request_id="r1")


def test_sealer_refuses_after_final() -> None:
    sealer = ResponseSealer(DEK, "r1")
    sealer.seal_final({})
    with pytest.raises(RuntimeError):
        sealer.seal_chunk("late")


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["suite"])
def test_known_answer_response_frames(case: dict[str, object]) -> None:
    dek = bytes.fromhex(VECTORS["dek_hex"])
    request_id = VECTORS["header"]["request_id"]
    sealer = ResponseSealer(dek, request_id, _salt=bytes.fromhex(VECTORS["run_salt_hex"]))
    ours = [
        sealer.start_frame,
        sealer.seal_chunk("Hello"),
        sealer.seal_chunk(" ✓"),
        sealer.seal_final({"output_tokens": 2}),
    ]
    assert [frame.hex() for frame in ours] == case["response_frames_hex"]
    events = read_all(ours, request_id=request_id, dek=dek)
    assert events[:3] == [StartEvent(), TextEvent("Hello"), TextEvent(" ✓")]
