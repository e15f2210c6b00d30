"""Where the client connects and what it pins: the service URL, the tenant, and the trust files.

Trust files (all public; the CLI's ``root init``, ``release-key init`` and ``manifest build`` write them):
the platform root's public key (``<default_root_path()>.pub``), the release key's public key
(``<default release key path>.pub``) and the signed release manifest (``~/.config/securechat/manifest.json``).

Pinning the release log's verifier key (``log_vkey_path``; by default ``<log key path>.vkey`` when that file
exists, as ``securechat log init`` writes it) makes the client also require that the manifest is in the log,
cosigned by ``min_witnesses`` of the pinned witnesses (all of them unless set), before it seals anything.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from securechat.attestation import default_root_path
from securechat.attestation.manifest import default_release_key_path
from securechat.client.errors import ConfigError
from securechat.envelope import is_valid_id
from securechat.suites import DEFAULT_SUITES, Suite
from securechat.transparency.paths import default_last_seen_path, default_log_key_path

URL_ENV: Final = "SECURECHAT_URL"
TENANT_ENV: Final = "SECURECHAT_TENANT"
REGION_ENV: Final = "SECURECHAT_REGION"
API_KEY_ENV: Final = "SECURECHAT_API_KEY"
TOKEN_ENV: Final = "SECURECHAT_TOKEN"  # an identity provider's access token (JWT)
TOKEN_COMMAND_ENV: Final = "SECURECHAT_TOKEN_COMMAND"  # a command that prints one (split like a shell would)
LOG_VKEY_ENV: Final = "SECURECHAT_LOG_VKEY_FILE"
WITNESS_VKEYS_ENV: Final = "SECURECHAT_WITNESS_VKEY_FILES"  # paths, separated by os.pathsep
MIN_WITNESSES_ENV: Final = "SECURECHAT_MIN_WITNESSES"
DEFAULT_URL: Final = "http://127.0.0.1:8000"
DEFAULT_REGION: Final = "us-west-1"
DEFAULT_MANIFEST_PATH: Final = Path("~/.config/securechat/manifest.json")


def _public_path_for(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")  # where the key-file tools write the public half


def default_root_public_key_path(environ: Mapping[str, str] = os.environ) -> Path:
    return _public_path_for(default_root_path(environ))


def default_release_public_key_path(environ: Mapping[str, str] = os.environ) -> Path:
    return _public_path_for(default_release_key_path(environ))


def default_log_vkey_path(environ: Mapping[str, str] = os.environ) -> Path | None:
    """``$SECURECHAT_LOG_VKEY_FILE``, else the ``.vkey`` beside the default log key if it exists, else None."""
    configured = environ.get(LOG_VKEY_ENV)
    if configured:
        return Path(configured).expanduser()
    beside_key = default_log_key_path(environ)
    vkey = beside_key.with_name(beside_key.name + ".vkey")
    return vkey if vkey.exists() else None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    tenant_id: str
    base_url: str = DEFAULT_URL
    region: str = DEFAULT_REGION
    api_key: str | None = field(default=None, repr=False)  # sent as "Authorization: Bearer ..." when set
    token: str | None = field(default=None, repr=False)  # or an identity provider's token (a JWT)
    token_command: tuple[str, ...] | None = None  # or a command that prints one, run again before it expires
    root_public_key_path: Path = field(default_factory=default_root_public_key_path)
    release_public_key_path: Path = field(default_factory=default_release_public_key_path)
    manifest_path: Path = DEFAULT_MANIFEST_PATH
    # Extra SEV-SNP ARKs to trust beside AMD's (an emulated platform's ark.der, for development).
    snp_ark_paths: tuple[Path, ...] = ()
    # The suites this client seals with, in order of preference; it uses only those the pinned manifest allows
    # too. The default, the post-quantum hybrid alone, refuses a worker that offers only a classical key.
    suites: tuple[Suite, ...] = DEFAULT_SUITES
    max_age_s: float = 60.0  # oldest attestation document accepted
    timeout_s: float = 60.0  # per connect/read on the HTTP connection
    key_cache_ttl_s: float = 30.0  # verified keys are reused this long at most (and never past their expiry)
    # The release log: with a pinned log key, a manifest must be in the log before anything is sealed.
    log_vkey_path: Path | None = None
    witness_vkey_paths: tuple[Path, ...] = ()
    min_witnesses: int | None = None  # None: every pinned witness must have cosigned
    log_state_path: Path = field(default_factory=default_last_seen_path)  # the newest checkpoint accepted

    def __post_init__(self) -> None:
        if not is_valid_id(self.tenant_id):
            raise ConfigError("tenant id must be a short identifier ([A-Za-z0-9][A-Za-z0-9_.:-]{0,63})")
        if not is_valid_id(self.region):
            raise ConfigError("region must be a short identifier")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError("base_url must be an http(s) URL")
        for name, value in (("api key", self.api_key), ("token", self.token)):
            if value is not None and (not value or any(c.isspace() for c in value)):
                raise ConfigError(f"{name} must be non-empty and contain no whitespace")
        if sum(value is not None for value in (self.api_key, self.token, self.token_command)) > 1:
            raise ConfigError("give one credential: an API key, a token, or a token command")
        if self.token_command is not None:
            if not self.token_command:
                raise ConfigError("the token command is empty")
            object.__setattr__(self, "token_command", tuple(self.token_command))
        if min(self.max_age_s, self.timeout_s) <= 0 or self.key_cache_ttl_s < 0:
            raise ConfigError("max_age_s and timeout_s must be positive, key_cache_ttl_s non-negative")
        for name in ("root_public_key_path", "release_public_key_path", "manifest_path", "log_state_path"):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser())
        if self.log_vkey_path is not None:
            object.__setattr__(self, "log_vkey_path", Path(self.log_vkey_path).expanduser())
        object.__setattr__(self, "witness_vkey_paths", tuple(Path(p).expanduser() for p in self.witness_vkey_paths))
        object.__setattr__(self, "snp_ark_paths", tuple(Path(p).expanduser() for p in self.snp_ark_paths))
        if self.witness_vkey_paths and self.log_vkey_path is None:
            raise ConfigError("witness keys are pinned but no release log key: pin the log's key as well")
        if self.min_witnesses is not None and not 0 <= self.min_witnesses <= len(self.witness_vkey_paths):
            raise ConfigError("min_witnesses must be between 0 and the number of pinned witness keys")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        try:
            object.__setattr__(self, "suites", tuple(Suite(suite) for suite in self.suites))
        except ValueError:
            raise ConfigError(f"suites must be among: {', '.join(suite.value for suite in Suite)}") from None
        if not self.suites or len(set(self.suites)) != len(self.suites):
            raise ConfigError("suites must be a non-empty list of unique suites")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> ClientConfig:
        """Environment first, then ``overrides`` (e.g. CLI flags) where they are not None."""
        values: dict[str, Any] = {
            "base_url": environ.get(URL_ENV) or None,
            "tenant_id": environ.get(TENANT_ENV) or None,
            "region": environ.get(REGION_ENV) or None,
            "api_key": environ.get(API_KEY_ENV) or None,
            "token": environ.get(TOKEN_ENV) or None,
            "token_command": tuple(shlex.split(environ[TOKEN_COMMAND_ENV])) if environ.get(TOKEN_COMMAND_ENV) else None,
            "root_public_key_path": default_root_public_key_path(environ),
            "release_public_key_path": default_release_public_key_path(environ),
            "log_vkey_path": default_log_vkey_path(environ),
            "witness_vkey_paths": tuple(Path(p) for p in environ.get(WITNESS_VKEYS_ENV, "").split(os.pathsep) if p)
            or None,
            "min_witnesses": _int_or_none(environ.get(MIN_WITNESSES_ENV), MIN_WITNESSES_ENV),
            "log_state_path": default_last_seen_path(environ),
        }
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown client settings: {sorted(unknown)}")
        given = {name: value for name, value in overrides.items() if value is not None}
        if given.keys() & {"api_key", "token", "token_command"}:  # a credential given outright replaces the env's
            for name in ("api_key", "token", "token_command"):
                values.pop(name, None)
        values.update(given)
        if values.get("tenant_id") is None:
            raise ConfigError(f"no tenant: pass --tenant or set {TENANT_ENV}")
        return cls(**{name: value for name, value in values.items() if value is not None})


def _int_or_none(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number") from None
