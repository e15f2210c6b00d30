import pytest

from securechat.errors import InvalidFrame
from securechat.framing import FrameDecoder, decode_frames, encode_frame


def test_round_trip_across_arbitrary_chunk_boundaries() -> None:
    payloads = [b"a", b"bc" * 100, bytes(range(256))]
    wire = b"".join(encode_frame(p) for p in payloads)
    for step in (1, 3, 7, len(wire)):
        decoder = FrameDecoder()
        chunks = [wire[i : i + step] for i in range(0, len(wire), step)]
        assert list(decoder.iter_frames(chunks)) == payloads


def test_length_prefix_is_four_bytes_big_endian() -> None:
    assert encode_frame(b"xyz") == b"\x00\x00\x00\x03xyz"


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x00\x00\x05abc",  # short frame: stream ends inside it
        b"\x00\x00",  # short length prefix
        encode_frame(b"ok") + b"\x01",  # trailing garbage
        b"\x00\x00\x00\x00",  # empty frame
        b"\x00\x10\x00\x01" + b"x" * 10,  # over the size limit
    ],
)
def test_refuses_malformed_streams(wire: bytes) -> None:
    with pytest.raises(InvalidFrame):
        decode_frames(wire, max_frame_bytes=1 << 16)


def test_encode_refuses_oversize_and_empty() -> None:
    with pytest.raises(InvalidFrame):
        encode_frame(b"x" * 11, max_frame_bytes=10)
    with pytest.raises(InvalidFrame):
        encode_frame(b"")
