"""Default file locations, each overridable by a flag or by one environment variable.

| what | default (``~/.config`` = C, ``~/.local/share`` = D) | environment |
|---|---|---|
| log signing key (0600; ``.pub`` and ``.vkey`` beside it) | ``C/securechat/log-key.pem`` | ``SECURECHAT_LOG_KEY`` |
| log database (leaves, checkpoints) | ``D/securechat/transparency-log.sqlite3`` | ``SECURECHAT_LOG_DB`` |
| witness key (0600; ``.vkey`` beside it) | ``C/securechat/witness-key.pem`` | ``SECURECHAT_WITNESS_KEY`` |
| witness state | ``D/securechat/witness.sqlite3`` | ``SECURECHAT_WITNESS_DB`` |
| a client's last-seen checkpoints | ``D/securechat/transparency-last-seen.json`` | ``SECURECHAT_LOG_STATE`` |

Keys live under ``~/.config`` with the other signing keys; data under ``~/.local/share`` with the tenant
database. A witness meant to be independent belongs on another machine, under another operator's account.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

LOG_KEY_ENV: Final = "SECURECHAT_LOG_KEY"
LOG_DB_ENV: Final = "SECURECHAT_LOG_DB"
WITNESS_KEY_ENV: Final = "SECURECHAT_WITNESS_KEY"
WITNESS_DB_ENV: Final = "SECURECHAT_WITNESS_DB"
LAST_SEEN_ENV: Final = "SECURECHAT_LOG_STATE"

DEFAULT_LOG_KEY_PATH: Final = Path("~/.config/securechat/log-key.pem")
DEFAULT_LOG_DB_PATH: Final = Path("~/.local/share/securechat/transparency-log.sqlite3")
DEFAULT_WITNESS_KEY_PATH: Final = Path("~/.config/securechat/witness-key.pem")
DEFAULT_WITNESS_DB_PATH: Final = Path("~/.local/share/securechat/witness.sqlite3")
DEFAULT_LAST_SEEN_PATH: Final = Path("~/.local/share/securechat/transparency-last-seen.json")


def _resolve(env: str, default: Path, environ: Mapping[str, str]) -> Path:
    configured = environ.get(env)
    return Path(configured if configured else default).expanduser()


def default_log_key_path(environ: Mapping[str, str] = os.environ) -> Path:
    return _resolve(LOG_KEY_ENV, DEFAULT_LOG_KEY_PATH, environ)


def default_log_db_path(environ: Mapping[str, str] = os.environ) -> Path:
    return _resolve(LOG_DB_ENV, DEFAULT_LOG_DB_PATH, environ)


def default_witness_key_path(environ: Mapping[str, str] = os.environ) -> Path:
    return _resolve(WITNESS_KEY_ENV, DEFAULT_WITNESS_KEY_PATH, environ)


def default_witness_db_path(environ: Mapping[str, str] = os.environ) -> Path:
    return _resolve(WITNESS_DB_ENV, DEFAULT_WITNESS_DB_PATH, environ)


def default_last_seen_path(environ: Mapping[str, str] = os.environ) -> Path:
    return _resolve(LAST_SEEN_ENV, DEFAULT_LAST_SEEN_PATH, environ)
