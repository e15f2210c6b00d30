import json
import os

import pytest

from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.stream import (
    ErrorEvent,
    FinalEvent,
    ResponseOpener,
    ResponseSealer,
    TextEvent,
    derive_response_key,
    make_error_frame,
)
from tests.test_envelope import VECTORS

DEK = os.urandom(32)


def frames_for(request_id: str, chunks: list[str], dek: bytes = DEK) -> list[bytes]:
    sealer = ResponseSealer(derive_response_key(dek, request_id), request_id)
    return [*(sealer.seal_chunk(c) for c in chunks), sealer.seal_final({"output_tokens": len(chunks)})]


def read_all(frames: list[bytes], request_id: str = "r1", dek: bytes = DEK) -> list[object]:
    opener = ResponseOpener.for_request(dek, request_id)
    events = [opener.open(frame) for frame in frames]
    opener.finish()
    return events


def test_round_trip() -> None:
    events = read_all(frames_for("r1", ["a", "ß✓", ""]))
    assert events == [TextEvent("a"), TextEvent("ß✓"), TextEvent(""), FinalEvent({"output_tokens": 3}, None)]


def test_truncated_stream_is_detected() -> None:
    with pytest.raises(InvalidCiphertext):
        read_all(frames_for("r1", ["a", "b"])[:-1])


def test_reordered_frames_are_refused() -> None:
    frames = frames_for("r1", ["a", "b"])
    with pytest.raises(InvalidCiphertext):
        read_all([frames[1], frames[0], frames[2]])


def test_replayed_frame_is_refused() -> None:
    frames = frames_for("r1", ["a", "b"])
    with pytest.raises(InvalidCiphertext):
        read_all([frames[0], frames[0], *frames[1:]])


def test_frames_from_another_request_are_refused() -> None:
    other = frames_for("r2", ["x"])
    mine = frames_for("r1", ["a"])
    with pytest.raises(InvalidCiphertext):
        read_all([other[0], mine[1]])
    # Same DEK but another request id: the derived key and AAD differ.
    with pytest.raises(InvalidCiphertext):
        read_all(frames_for("r2", ["a"]), request_id="r1")


def test_final_flag_cannot_be_forged() -> None:
    frames = frames_for("r1", ["a", "b"])
    forged = frames[1][:1] + b"\x01" + frames[1][2:]  # set final on a chunk frame
    with pytest.raises(InvalidCiphertext):
        read_all([frames[0], forged])


def test_frames_after_final_are_refused() -> None:
    frames = frames_for("r1", ["a"])
    with pytest.raises(InvalidCiphertext):
        read_all([*frames, frames[0]])


def test_error_frame_ends_the_stream_with_a_known_code() -> None:
    frames = [*frames_for("r1", ["a"])[:1], make_error_frame(ErrorCode.WORKER_LOST, "r1")]
    events = read_all(frames)
    assert events[-1] == ErrorEvent(code="worker_lost", request_id="r1")


def test_unknown_error_codes_are_not_echoed() -> None:
    frame = b"\x02" + json.dumps({"code": "my prompt was: hello", "request_id": "r1"}).encode()
    opener = ResponseOpener.for_request(DEK, "r1")
    assert opener.open(frame) == ErrorEvent(code="internal_error", request_id="r1")


def test_sealer_refuses_after_final() -> None:
    sealer = ResponseSealer(derive_response_key(DEK, "r1"), "r1")
    sealer.seal_final({})
    with pytest.raises(RuntimeError):
        sealer.seal_chunk("late")


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["suite"])
def test_known_answer_response_frames(case: dict[str, object]) -> None:
    dek = bytes.fromhex(VECTORS["dek_hex"])
    request_id = VECTORS["header"]["request_id"]
    sealer = ResponseSealer(derive_response_key(dek, request_id), request_id)
    ours = [sealer.seal_chunk("Hello"), sealer.seal_chunk(" ✓"), sealer.seal_final({"output_tokens": 2})]
    assert [frame.hex() for frame in ours] == case["response_frames_hex"]
    events = read_all(ours, request_id=request_id, dek=dek)
    assert events[:2] == [TextEvent("Hello"), TextEvent(" ✓")]
