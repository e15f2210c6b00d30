"""The bearer credential the client sends: an API key, a token, or a command that prints a token.

A token command (``--token-command``, ``SECURECHAT_TOKEN_COMMAND``) is how a client fronts an OIDC login without
storing secrets: ``securechat proxy --token-command "oidc-agent-cli token acme"`` runs it when it needs a token
and again before that token expires (its ``exp``, read without verifying: the gateway verifies), so a long
proxy session keeps working. The command runs without a shell; its output is never logged, and a failure says
only that it failed (and its exit status).
"""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from securechat.client.errors import ConfigError

REFRESH_BEFORE_S: Final = 60.0  # a token this close to its expiry is replaced before it is sent
DEFAULT_TOKEN_LIFE_S: Final = 300.0  # a token without exp is asked for again this often
COMMAND_TIMEOUT_S: Final = 60.0


class TokenCommandFailed(ConfigError):
    """The token command failed or printed no token (local setup: exit code 2)."""


class Credentials:
    """``authorization()`` is the ``Authorization`` header value to send (or None); thread-safe."""

    def __init__(
        self,
        api_key: str | None = None,
        token: str | None = None,
        token_command: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sum(value is not None for value in (api_key, token, token_command)) > 1:
            raise ConfigError("give one credential: an API key, a token, or a token command")
        self._api_key = api_key
        self._token = token
        self._command = tuple(token_command) if token_command is not None else None
        self._clock = clock
        self._expires_at = float("inf") if token is not None else 0.0
        self._lock = threading.Lock()
        self.commands_run = 0

    def authorization(self) -> str | None:
        if self._api_key is not None:
            return f"Bearer {self._api_key}"
        if self._command is not None:
            with self._lock:
                if self._token is None or self._clock() >= self._expires_at - REFRESH_BEFORE_S:
                    self._token = self._run()
                    expiry = token_expiry(self._token)
                    self._expires_at = expiry if expiry is not None else self._clock() + DEFAULT_TOKEN_LIFE_S
        return f"Bearer {self._token}" if self._token is not None else None

    def _run(self) -> str:
        assert self._command is not None
        self.commands_run += 1
        try:
            done = subprocess.run(self._command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TokenCommandFailed(f"the token command could not run ({type(exc).__name__})") from None
        token = done.stdout.strip()
        if done.returncode != 0 or not token or any(c.isspace() for c in token):
            raise TokenCommandFailed(f"the token command printed no token (exit status {done.returncode})")
        return token


def token_expiry(token: str) -> float | None:
    """A JWT's ``exp`` (unix seconds), read without verifying it; None when it has none or is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    expiry = payload.get("exp") if isinstance(payload, dict) else None
    return float(expiry) if isinstance(expiry, int | float) and not isinstance(expiry, bool) else None
