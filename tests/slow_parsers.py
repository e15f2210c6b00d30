"""Parsers that misbehave, for the sandbox's budget tests (run in the budgeted child process)."""

from __future__ import annotations

import time
from typing import NoReturn


def stall(media_type: str, data: bytes, filename: str) -> NoReturn:
    while True:  # burns CPU until the budget stops it
        time.perf_counter()


def hoard(media_type: str, data: bytes, filename: str) -> NoReturn:
    blocks = []
    while True:
        blocks.append(bytearray(64 << 20))


def crash(media_type: str, data: bytes, filename: str) -> NoReturn:
    import os

    os._exit(3)
