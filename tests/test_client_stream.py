"""The SDK checks every frame as it arrives: tampered, reordered, replayed or truncated answers raise."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from securechat.client import InvalidCiphertext, ResponseFailed, SecureChatClient, ServiceError
from securechat.errors import ErrorCode
from securechat.framing import encode_frame
from securechat.stream import make_error_frame
from tests.client_harness import (
    FRAME_CAPACITY,
    LocalService,
    Mutation,
    Tamper,
    TrustFiles,
    make_worker,
    serve_gateway,
)

# One full frame of text each, then a short one: the answer's frames are exactly these three texts.
TEXTS = ("1" * FRAME_CAPACITY, "2" * FRAME_CAPACITY, "three")
ANSWER = "".join(TEXTS)


def _join(frames: list[bytes]) -> bytes:
    return b"".join(encode_frame(frame) for frame in frames)


def _flip_last_byte(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 1])


def _flip_padding(frame: bytes) -> bytes:
    """Flip a ciphertext byte over the frame's zero padding (the third text is short: its frame is mostly padding)."""
    position = len(frame) - 16 - 100  # 100 bytes before the tag
    return frame[:position] + bytes([frame[position] ^ 1]) + frame[position + 1 :]


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture
def service(trust: TrustFiles) -> Iterator[LocalService]:
    with serve_gateway([make_worker("w0", trust.root, chunks=TEXTS)]) as running:
        yield running


def _read(service: LocalService, trust: TrustFiles, mutate: Mutation) -> tuple[list[str], BaseException]:
    client = SecureChatClient(trust.client_config(service.url), httpx.Client(transport=Tamper(mutate)))
    pieces: list[str] = []
    with pytest.raises((InvalidCiphertext, ResponseFailed, ServiceError)) as caught:
        for piece in client.stream("Hi"):
            pieces.append(piece)
    return pieces, caught.value


def test_untouched_frames_pass(service: LocalService, trust: TrustFiles) -> None:
    client = SecureChatClient(trust.client_config(service.url), httpx.Client(transport=Tamper(_join)))
    assert client.chat("Hi") == ANSWER


@pytest.mark.parametrize(
    ("mutate", "num_good_pieces"),
    [
        # f[0] is the worker's start frame (its run salt), then the three text frames, then the final frame.
        (lambda f: _join([f[0], f[1], _flip_last_byte(f[2]), *f[3:]]), 1),  # tampered ciphertext
        (lambda f: _join([f[0], f[1], f[2], _flip_padding(f[3]), *f[4:]]), 2),  # tampered padding (inside the AEAD)
        (lambda f: _join([f[0], bytes([4]) + f[1][1:], *f[2:]]), 0),  # the first text frame relabelled final
        (lambda f: _join([f[0], f[2], f[1], *f[3:]]), 0),  # reordered
        (lambda f: _join([f[0], f[1], f[1], *f[2:]]), 1),  # replayed frame
        (lambda f: _join(f[:-1]), 3),  # final frame dropped: truncated at a frame boundary
        (lambda f: _join(f)[:-7], 3),  # cut inside the final frame
        (lambda f: _join(f[:3]), 2),  # cut after two chunks
        (lambda f: _join([*f, f[-1]]), 3),  # a frame after the final one
    ],
    ids=[
        "tampered",
        "padding",
        "flag",
        "reordered",
        "replayed",
        "no-final",
        "cut-in-frame",
        "cut-early",
        "after-final",
    ],
)
def test_tampering_raises_invalid_ciphertext(
    service: LocalService, trust: TrustFiles, mutate: Mutation, num_good_pieces: int
) -> None:
    pieces, error = _read(service, trust, mutate)
    assert isinstance(error, InvalidCiphertext) and str(error) == "invalid ciphertext"
    assert pieces == list(TEXTS[:num_good_pieces])  # only authenticated text was ever yielded


def test_a_frame_spliced_from_another_request_raises(service: LocalService, trust: TrustFiles) -> None:
    stolen: list[bytes] = []

    def keep_then_splice(frames: list[bytes]) -> bytes:
        if not stolen:
            stolen.extend(frames)
            return _join(frames)
        return _join([stolen[0], *frames[1:]])

    client = SecureChatClient(trust.client_config(service.url), httpx.Client(transport=Tamper(keep_then_splice)))
    assert client.chat("Hi") == ANSWER
    with pytest.raises(InvalidCiphertext):
        client.chat("Hi")


def test_an_error_frame_ends_the_stream_with_its_code(service: LocalService, trust: TrustFiles) -> None:
    pieces, error = _read(service, trust, lambda f: _join([f[0], f[1], make_error_frame(ErrorCode.WORKER_LOST, "x")]))
    assert isinstance(error, ResponseFailed) and error.code == "worker_lost"
    assert pieces == [TEXTS[0]]
