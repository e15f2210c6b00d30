"""What the ``securechat log`` commands share: one-line errors for what the operator can fix, and input files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from securechat.attestation import KeyFileError
from securechat.transparency.last_seen import LastSeenCorrupt
from securechat.transparency.log import LogCorrupted, NoCheckpoint
from securechat.transparency.witness_http import WitnessError

Command = Callable[[argparse.Namespace], int]

# Missing files, bad keys, malformed input, a log to set up first: the operator's to fix, so one line each.
# Anything else is a bug and keeps its traceback. None of these messages carries key material.
EXPECTED_ERRORS: Final = (OSError, ValueError, KeyFileError, NoCheckpoint, LogCorrupted, LastSeenCorrupt, WitnessError)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def read_input(path: Path | None) -> bytes:
    """The file's bytes, or stdin's for no path or ``-``."""
    return sys.stdin.buffer.read() if path is None or str(path) == "-" else path.read_bytes()


def guarded(command: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except EXPECTED_ERRORS as error:
            return fail(str(error))

    return run
