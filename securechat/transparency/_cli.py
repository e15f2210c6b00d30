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

# Missing files, bad keys, malformed input, a log to set up first: the operator's to fix here (exit 2, as every
# securechat command: securechat/cli_exit.py). A corrupted log or a refusing witness: the operation failed
# (exit 1). Anything else is a bug and keeps its traceback. None of these messages carries key material.
LOCAL_ERRORS: Final = (OSError, ValueError, KeyFileError, NoCheckpoint, LastSeenCorrupt)
FAILURES: Final = (LogCorrupted, WitnessError)
EXPECTED_ERRORS: Final = (*LOCAL_ERRORS, *FAILURES)


# The exit codes of securechat/cli_exit.py, named here so the log's commands stay free of client imports.
FAILED: Final = 1
USAGE: Final = 2


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def read_input(path: Path | None) -> bytes:
    """The file's bytes, or stdin's for no path or ``-``."""
    return sys.stdin.buffer.read() if path is None or str(path) == "-" else path.read_bytes()


def guarded(command: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except FAILURES as error:
            return fail(str(error), FAILED)
        except LOCAL_ERRORS as error:
            return fail(str(error), USAGE)

    return run
