"""One exit-code convention for every ``securechat`` command, and no traceback for an expected failure.

    0    success
    1    the operation failed: the service refused it or failed, or an answer or an attestation failed
         verification (nothing was sealed to an unverified key)
    2    bad usage or local setup: arguments, a missing or invalid local file (trust files, keys, keyring,
         tenant database, server secret), a dependency that is not installed
    130  interrupted (Ctrl-C)

Commands return 0/1/2 themselves where they know better; ``run`` maps what escapes them. Messages name files,
ids and codes, never a key or any content.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from typing import Final

from securechat.attestation import KeyFileError
from securechat.client.collections import DocumentError
from securechat.client.errors import ClientError, ConfigError
from securechat.client.keyring import KeyringError
from securechat.db import DatabaseUnavailable, SchemaError
from securechat.errors import InvalidCiphertext
from securechat.response import ResponseFailed
from securechat.tenants.server_secret import ServerSecretError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

# What the person at the keyboard can fix on this machine.
_LOCAL: Final = (
    ConfigError,
    KeyringError,
    KeyFileError,
    DocumentError,
    ServerSecretError,
    SchemaError,
    sqlite3.Error,
    OSError,
    ValueError,
)
# What went wrong over there, or failed verification.
_REMOTE: Final = (ClientError, ResponseFailed, DatabaseUnavailable)

Command = Callable[[argparse.Namespace], int]


def run(command: Command, args: argparse.Namespace) -> int:
    try:
        return command(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InvalidCiphertext:
        print("error: an answer failed verification (tampered, truncated, or the wrong key)", file=sys.stderr)
        return EXIT_FAILED
    except ModuleNotFoundError as missing:
        print(
            f"error: this command needs {missing.name}, a server dependency: pip install 'securechat[server]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except _LOCAL as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except _REMOTE as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
