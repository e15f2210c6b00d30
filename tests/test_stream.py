import json
import os

import pytest

from securechat.deltas import Delta
from securechat.engine.base import TokenLogprob
from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.stream import (
    KIND_EVENTS,
    MAX_FRAME_BYTES,
    MIN_FRAME_BYTES,
    DeltasEvent,
    ErrorEvent,
    FinalEvent,
    ResponseOpener,
    ResponseSealer,
    StartEvent,
    TextEvent,
    TrailerPartEvent,
    Usage,
    _aad,
    _nonce,
    make_error_frame,
    read_usage,
    split_utf8,
    wire_frame_sizes,
)
from securechat.structured.tool_calls import ToolCall
from tests.test_envelope import VECTORS
from tests.vectors.make_vectors import known_answer_frames

DEK = os.urandom(32)
FRAME_BYTES = 512


def frames_for(request_id: str, texts: list[str], dek: bytes = DEK, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    sealer = ResponseSealer(dek, request_id, frame_bytes)
    frames = [sealer.start_frame]
    for text in texts:
        frames += sealer.seal_text(text)
    return frames + sealer.seal_final({"output_tokens": len(texts)}, usage=Usage(3, len(texts)))


def read_all(frames: list[bytes], request_id: str = "r1", dek: bytes = DEK) -> list[object]:
    opener = ResponseOpener.for_request(dek, request_id)
    events = [opener.open(frame) for frame in frames]
    opener.finish()
    return events


def text_of(events: list[object]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextEvent))


def test_round_trip() -> None:
    events = read_all(frames_for("r1", ["a", "ß✓", ""]))
    assert events == [
        StartEvent(),
        TextEvent("a"),
        TextEvent("ß✓"),
        TextEvent(""),
        FinalEvent({"output_tokens": 3}, None, Usage(3, 3), billed=Usage(64, 64)),
    ]


def test_every_data_frame_has_one_size_whatever_its_text() -> None:
    """The host sees sizes only: a frame holding one byte and one holding a full frame's worth look alike."""
    frames = frames_for("r1", ["a", "x" * (FRAME_BYTES - 3), "✓" * 20, ""])
    data_size, final_size = wire_frame_sizes(FRAME_BYTES)
    assert [len(f) for f in frames[1:-1]] == [data_size] * 4
    assert len(frames[-1]) == final_size


def test_text_beyond_one_frame_continues_in_the_next_without_cutting_a_character() -> None:
    text = "é" * 300 + "日本語" * 200 + "🙂" * 100  # 2-, 3- and 4-byte characters, ~2.4 KB
    frames = frames_for("r1", [text])
    events = read_all(frames)
    assert len(frames) > 5  # start, several text frames, final
    assert all(isinstance(e, TextEvent) and e.text for e in events[1:-1])  # each frame decodes on its own
    assert text_of(events) == text


@pytest.mark.parametrize("capacity", [1, 2, 3, 4, 5, 509])
def test_split_utf8_keeps_characters_whole(capacity: int) -> None:
    data = ("a🙂é日" * 50).encode()
    pieces = split_utf8(data, max(capacity, 4))
    assert b"".join(pieces) == data
    assert all(len(p) <= max(capacity, 4) for p in pieces)
    for piece in pieces:
        piece.decode("utf-8")  # raises if a character was cut


def test_a_long_trailer_spans_frames_and_ends_in_the_final_one() -> None:
    sealer = ResponseSealer(DEK, "r1", FRAME_BYTES)
    metrics = {"citations": [{"doc": "d" * 60, "chunk": i, "score": 0.5} for i in range(20)]}
    frames = [sealer.start_frame, *sealer.seal_final(metrics, usage=Usage(1, 0))]
    events = read_all(frames)
    assert len(frames) > 3
    assert all(isinstance(e, TrailerPartEvent) for e in events[1:-1])
    assert events[-1] == FinalEvent(metrics, None, Usage(1, 0), billed=Usage(64, 0))


def test_the_largest_metrics_trailer_fits_one_frame_of_the_smallest_size() -> None:
    """MIN_FRAME_BYTES is chosen so the final frame alone carries any metrics a worker writes: an answer then
    always ends with exactly one trailer frame, whatever its numbers."""
    worst = {
        "worker_id": "r" * 64 + "-" + "x" * 36,
        "ttft_ms": 123456789.123,
        "total_ms": 123456789.123,
        "input_tokens": 2**31,
        "output_tokens": 2**31,
        "tokens_per_sec": 123456789.123,
        "finish_reason": "length",
    }
    sealer = ResponseSealer(DEK, "r1", MIN_FRAME_BYTES)
    assert len(sealer.seal_final(worst, ErrorCode.ENGINE_FAILED, Usage(2**31, 2**31))) == 1


def test_frame_size_bounds_are_enforced() -> None:
    for bad in (MIN_FRAME_BYTES - 1, MAX_FRAME_BYTES + 1):
        with pytest.raises(ValueError):
            ResponseSealer(DEK, "r1", bad)


def test_a_frame_of_another_size_is_refused() -> None:
    """Frames of one answer share one size; a correctly sealed frame of another size (what a worker leaking
    through sizes would send) is refused."""
    small = ResponseSealer(DEK, "r1", 512)
    start = small.start_frame
    large = ResponseSealer(DEK, "r1", 1024, _salt=start[1:])  # same key, other size
    large.seal_text("a")  # advance to seq 1
    with pytest.raises(InvalidCiphertext):
        read_all([start, *small.seal_text("a"), *large.seal_text("b")])


def test_usage_is_readable_in_the_clear_and_authenticated() -> None:
    frames = frames_for("r1", ["a", "b"])
    assert read_usage(frames[-1]) == Usage(64, 64)  # rounded up to the default bucket
    assert all(read_usage(frame) is None for frame in frames[:-1])
    forged = bytearray(frames[-1])
    forged[9:13] = (10**6).to_bytes(4, "big")  # inflate output_tokens
    with pytest.raises(InvalidCiphertext):
        read_all([*frames[:-1], bytes(forged)])


def test_tampered_padding_is_refused() -> None:
    """Padding is inside the AEAD: flipping a ciphertext byte over the padding fails like any tampering."""
    start, text, final = frames_for("r1", ["a"])
    tampered = bytearray(text)
    tampered[-20] ^= 0x01  # a byte of the padded region, just before the tag
    with pytest.raises(InvalidCiphertext):
        read_all([start, bytes(tampered), final])


def test_a_worker_that_pads_with_garbage_is_refused() -> None:
    """Even correctly sealed, non-zero padding (a side channel from a buggy or hostile worker) is refused."""
    sealer = ResponseSealer(DEK, "r1", FRAME_BYTES)
    start = sealer.start_frame
    plaintext = b"\x01\x00\x01a" + b"\x07" * (FRAME_BYTES - 4)
    prefix = b"\x01" + (0).to_bytes(4, "big")
    frame = prefix + sealer._aead.encrypt(_nonce(0), plaintext, _aad("r1", prefix))
    with pytest.raises(InvalidCiphertext):
        read_all([start, frame])


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


def test_final_type_cannot_be_forged() -> None:
    start, a, _, _ = frames_for("r1", ["a", "b"])
    forged = b"\x04" + a[1:5] + b"\0" * 8 + a[5:]  # relabel a text frame as the final one
    with pytest.raises(InvalidCiphertext):
        read_all([start, forged])
    dropped = frames_for("r1", ["a"])  # or drop the final frame's type to end a stream early
    with pytest.raises(InvalidCiphertext):
        read_all([dropped[0], dropped[1], b"\x01" + dropped[2][1:5] + dropped[2][13:]])


def test_text_after_a_trailer_part_is_refused() -> None:
    trailer_sealer = ResponseSealer(DEK, "r1", FRAME_BYTES)
    start = trailer_sealer.start_frame
    first_part = trailer_sealer.seal_final({"long": "z" * 1000})[0]  # seq 0
    text_sealer = ResponseSealer(DEK, "r1", FRAME_BYTES, _salt=start[1:])  # same key
    late_text = text_sealer.seal_text("early")[0] and text_sealer.seal_text("late")[0]  # seq 1
    with pytest.raises(InvalidCiphertext):
        read_all([start, first_part, late_text])


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


@pytest.mark.parametrize(
    ("exact", "bucket", "billed"),
    [
        (Usage(0, 0), 64, Usage(0, 0)),
        (Usage(1, 64), 64, Usage(64, 64)),
        (Usage(65, 129), 64, Usage(128, 192)),
        (Usage(7, 9), 1, Usage(7, 9)),
    ],
)
def test_the_host_sees_token_counts_rounded_up_and_the_client_exact_ones(
    exact: Usage, bucket: int, billed: Usage
) -> None:
    sealer = ResponseSealer(DEK, "r1", FRAME_BYTES, bucket)
    frames = [sealer.start_frame, *sealer.seal_final({"worker_id": "w"}, usage=exact)]
    assert read_usage(frames[-1]) == billed
    final = read_all(frames, request_id="r1")[-1]
    assert isinstance(final, FinalEvent) and final.usage == exact and final.billed == billed
    assert "usage" not in final.extra


def test_sealer_refuses_after_final() -> None:
    sealer = ResponseSealer(DEK, "r1")
    sealer.seal_final({})
    with pytest.raises(RuntimeError):
        sealer.seal_text("late")


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["suite"])
def test_known_answer_response_frames(case: dict[str, object]) -> None:
    dek = bytes.fromhex(VECTORS["dek_hex"])
    request_id = VECTORS["header"]["request_id"]
    ours = known_answer_frames()
    assert [frame.hex() for frame in ours] == case["response_frames_hex"]
    events = read_all(ours, request_id=request_id, dek=dek)
    assert events[:3] == [StartEvent(), TextEvent("Hello"), TextEvent(" ✓")]
    assert isinstance(events[3], TrailerPartEvent) and isinstance(events[-1], FinalEvent)
    assert events[-1].usage == Usage(9, 2) and events[-1].metrics["output_tokens"] == 2
    assert events[-1].billed == Usage(64, 64) == read_usage(ours[-1])  # the host's view: rounded up to buckets


DELTAS = [
    Delta(0, "Hé", (TokenLogprob(b"H", -0.5, ((b"H", -0.5), (b"\xe2", -2.0))),)),
    Delta(1, "x" * 1200),  # longer than two frames: one frame holds only the middle of its line
    Delta(0, "", (), (ToolCall("call_1", "lookup", '{"q":"a\\nb"}'),), "tool_calls"),
    Delta(1, finish_reason="length"),
]


def test_deltas_span_frames_of_one_size_and_read_back_whole() -> None:
    sealer = ResponseSealer(DEK, "r1", FRAME_BYTES)
    frames = [
        sealer.start_frame,
        *sealer.seal_deltas(DELTAS[:2]),
        *sealer.seal_deltas(DELTAS[2:]),
        *sealer.seal_final({}),
    ]
    data_sizes = {len(frame) for frame in frames[1:-1]}
    assert data_sizes == {wire_frame_sizes(FRAME_BYTES)[0]}
    events = read_all(frames)
    read_back = [delta for event in events if isinstance(event, DeltasEvent) for delta in event.deltas]
    assert read_back == DELTAS
    assert any(isinstance(event, DeltasEvent) and not event.deltas for event in events)  # a line still open


def test_empty_deltas_are_one_padding_frame() -> None:
    sealer = ResponseSealer(DEK, "r1", FRAME_BYTES)
    frames = [sealer.start_frame, *sealer.seal_deltas([]), *sealer.seal_final({})]
    assert len(frames) == 3 and read_all(frames)[1] == DeltasEvent(())


@pytest.mark.parametrize(
    "body",
    [b'{"i": 9}\n', b'{"i": 0, "end": "maybe"}\n', b'{"i": 0, "lp": [["!!", 0.0, []]]}\n', b"not json\n"],
)
def test_a_delta_no_worker_writes_is_refused(body: bytes) -> None:
    sealer = ResponseSealer(DEK, "r1", FRAME_BYTES)
    start = sealer.start_frame
    frame = sealer._seal(KIND_EVENTS, body, None)
    opener = ResponseOpener.for_request(DEK, "r1")
    opener.open(start)
    with pytest.raises(InvalidCiphertext):
        opener.open(frame)


def test_a_trailer_cannot_begin_inside_an_open_delta_line() -> None:
    sealer = ResponseSealer(DEK, "r1", FRAME_BYTES)
    frames = [sealer.start_frame, sealer._seal(KIND_EVENTS, b'{"i": 0, "te', None), *sealer.seal_final({})]
    with pytest.raises(InvalidCiphertext):
        read_all(frames)
