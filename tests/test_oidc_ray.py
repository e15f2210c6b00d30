"""Tenants from an identity provider against the running Ray app: a second Serve application on the same
cluster requires credentials and trusts the local issuer process; its tokens reach /infer and /v1/collections
through the SDK, the CLI and the proxy (each with a token command), the issuer rotates its keys mid-test, and
every forged token is refused by name without a 5xx."""

from __future__ import annotations

import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from deployments.local import LocalApp
from securechat.cli import main
from securechat.client import ClientConfig, SecureChatClient
from securechat.client.keyring import Keyring
from securechat.proxy.app import create_proxy_app
from tests.client_harness import serve_asgi
from tests.oidc_harness import LocalIssuer
from tests.ray_harness import APP_ARGS, emulator_ark_path, pinned_client_config, platform_root_path

pytestmark = pytest.mark.ray

APP = "securechat-oidc"
PREFIX = "/oidc"
REGION = "oidc-1"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    local = LocalIssuer(tmp_path_factory.mktemp("issuer")).start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def oidc_app(
    ray_app: LocalApp, issuer: LocalIssuer, securechat_cache_dir: Path
) -> Iterator[tuple[LocalApp, dict[str, Any]]]:
    """A second application on the test cluster, at /oidc: credentials required, the local issuer trusted for
    tenant1, a scripted worker (its answers are known), collections on (no worker embeds: create and list)."""
    from ray import serve

    from deployments.app import build_app

    data = securechat_cache_dir / "oidc-app"
    args: dict[str, Any] = {
        **APP_ARGS,
        "regions": [{"name": REGION, "num_replicas": 1, "engine": {"kind": "tests.fakes:ScriptedEngine"}}],
        "auth": {"mode": "required", "issuers": [issuer.settings(jwks_ttl_s=3600, min_refresh_interval_s=2)]},
        "tenants": {"store_path": str(data / "tenants.sqlite3"), "server_secret_path": str(data / "secret")},
        "rag": {"enabled": True, "regions": [], "store_path": str(data / "documents.sqlite3")},
        "transparency": {},
    }
    serve.run(build_app(args), name=APP, route_prefix=PREFIX, blocking=False)
    app = LocalApp(ray_app.base_url + PREFIX, ray_app.metrics_url, ray_app.session_dir)
    app.wait_ready(REGION, 1)
    try:
        yield app, args
    finally:
        serve.delete(APP)


@pytest.fixture(scope="module")
def config(
    oidc_app: tuple[LocalApp, dict[str, Any]], securechat_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ClientConfig:
    app, args = oidc_app
    return pinned_client_config(
        tmp_path_factory.mktemp("trust"),
        args=args,
        region=REGION,
        release="oidc",
        base_url=app.base_url,
        root_public_key_path=Path(f"{platform_root_path(securechat_cache_dir)}.pub"),
        snp_ark_path=emulator_ark_path(securechat_cache_dir),
    )


def token_command(tmp_path: Path, issuer: LocalIssuer, kid: str) -> str:
    """A command printing a fresh token for tenant1 (as an OIDC helper would): the key from ``kid``'s file."""
    tokens = tmp_path / "token.txt"
    tokens.write_text(issuer.token(kid, scope="infer collections:read collections:write"))
    script = tmp_path / "print_token.py"
    script.write_text(f"import pathlib\nprint(pathlib.Path({str(tokens)!r}).read_text())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"{sys.executable} {script}"


def test_a_token_reaches_infer_and_collections_by_sdk_cli_and_proxy(
    config: ClientConfig, issuer: LocalIssuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = issuer.add_key("RS256")
    command = token_command(tmp_path, issuer, first)
    with_command = ClientConfig(**{**_fields(config), "token_command": ("/bin/sh", "-c", command)})
    with SecureChatClient(with_command, keyring=Keyring(tmp_path / "keyring.json")) as sdk:
        assert sdk.chat("Hi") == "Hello, world"
        created = sdk.collections.create("notes")
        assert created.collection_id in {c.collection_id for c in sdk.collections.list_all()}

    flags = [
        *("--url", config.base_url, "--tenant", "tenant1", "--region", REGION),
        *("--root-pub", str(config.root_public_key_path), "--release-pub", str(config.release_public_key_path)),
        *("--manifest", str(config.manifest_path), "--snp-ark", str(config.snp_ark_paths[0])),
        *("--token-command", command),
    ]
    assert main(["chat", "Hi", *flags]) == 0
    assert capsys.readouterr().out == "Hello, world\n"
    assert main(["collections", "list", *flags, "--keyring", str(tmp_path / "keyring.json")]) == 0
    assert created.collection_id in capsys.readouterr().out

    second = issuer.add_key("EdDSA")  # the issuer rotates: tokens now come from a key the gateway never saw
    (tmp_path / "rotated").mkdir()
    rotated = token_command(tmp_path / "rotated", issuer, second)
    proxied = ClientConfig(**{**_fields(config), "token_command": ("/bin/sh", "-c", rotated)})
    with serve_asgi(create_proxy_app(lambda: SecureChatClient(proxied)), lifespan="on") as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        reply = api.chat.completions.create(model="securechat", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "Hello, world"
        assert api.vector_stores.create(name="more").id


def test_forged_tokens_are_refused_by_name_without_a_5xx(
    oidc_app: tuple[LocalApp, dict[str, Any]], issuer: LocalIssuer
) -> None:
    app, _ = oidc_app
    kid = issuer.add_key("ES256")
    time.sleep(2.1)  # the gateway refetches for an unknown key id at most once per min_refresh_interval_s
    good = issuer.token(kid)
    header, payload, signature = good.split(".")
    cases = {
        "expired": issuer.token(kid, exp=1),
        "wrong_audience": issuer.token(kid, aud="elsewhere"),
        "bad_signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "algorithm_not_allowed": f"eyJhbGciOiJub25lIiwia2lkIjoie2tpZH0ifQ.{payload}.",
        "unknown_issuer": issuer.token(kid, iss="https://idp.example.com"),
        "token_too_large": issuer.token(kid, padding="x" * 9000),
        "missing_tenant_claim": issuer.token(kid, tenant=None),
    }
    for reason, value in cases.items():
        answer = httpx.post(
            f"{app.base_url}/v1/collections",
            json={"tenant_id": "tenant1"},
            headers={"Authorization": f"Bearer {value}"},
            timeout=30,
        )
        expected_reason = reason if reason != "token_too_large" else None  # refused unparsed, as any huge header
        assert answer.status_code == 401, reason
        assert answer.json().get("reason") == expected_reason, reason
    assert issuer.jwks_fetches() <= 4  # a handful of fetches for every token and key of the module


def _fields(config: ClientConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
