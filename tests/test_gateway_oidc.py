"""Tenants signed in by their identity provider, end to end in-process: a token from a real issuer process
reaches /infer and /v1/collections through the SDK, the CLI (a token command) and the proxy; refusals say why
(RFC 6750), tokens and API keys count against the same limits, and no token text reaches a log."""

from __future__ import annotations

import logging
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from securechat.cli import main
from securechat.client import SecureChatClient, ServiceError
from securechat.client.keyring import Keyring
from securechat.proxy import create_proxy_app
from securechat.tenants.oidc import IssuerSettings
from securechat.tenants.policy import TenantPolicy
from tests.client_harness import REGION, LocalService, TrustFiles, make_worker, serve_asgi, serve_gateway
from tests.oidc_harness import LocalIssuer
from tests.rag_harness import RAG

ALL = "infer collections:read collections:write"


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    local = LocalIssuer(tmp_path_factory.mktemp("issuer")).start()
    local.kid = local.add_key("ES256")  # type: ignore[attr-defined]
    yield local
    local.stop()


@pytest.fixture(scope="module")
def service(trust: TrustFiles, issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    from securechat.rag.store import SQLiteDocumentStore
    from securechat.rag.store_client import LocalDocumentStore

    tenants = tmp_path_factory.mktemp("tenants")
    documents = LocalDocumentStore(SQLiteDocumentStore(tenants / "documents.sqlite3"))
    settings = IssuerSettings.model_validate(issuer.settings())
    policy = TenantPolicy(requests_per_minute=1000)
    with serve_gateway(
        [make_worker("w0", trust.root)],
        tenants_dir=tenants,
        documents=documents,
        rag=RAG,
        default_policy=policy,
        issuers=[settings],
    ) as running:
        yield running


def token(issuer: LocalIssuer, scope: str = ALL, **claims: object) -> str:
    return issuer.token(issuer.kid, scope=scope, **claims)  # type: ignore[attr-defined]


def test_a_token_reaches_infer_and_collections_through_the_sdk(
    service: LocalService, trust: TrustFiles, issuer: LocalIssuer, tmp_path: Path
) -> None:
    config = trust.client_config(service.url, token=token(issuer))
    with SecureChatClient(config, keyring=Keyring(tmp_path / "keyring.json")) as client:
        assert client.chat("Hi") == "Hello, world"
        created = client.collections.create("notes")
        assert any(c.collection_id == created.collection_id for c in client.collections.list_all())
    narrow = trust.client_config(service.url, token=token(issuer, scope="infer"))
    with SecureChatClient(narrow, keyring=Keyring(tmp_path / "other.json")) as client:
        assert client.chat("Hi") == "Hello, world"
        with pytest.raises(ServiceError) as refused:
            client.collections.create("notes")
    assert (refused.value.status, refused.value.code) == (403, "forbidden")


def _post(service: LocalService, authorization: str | None, tenant: str = "tenant1") -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.post(f"{service.url}/v1/collections", json={"tenant_id": tenant}, headers=headers, timeout=10)


def test_refusals_say_why_as_rfc_6750_asks(service: LocalService, issuer: LocalIssuer) -> None:
    expired = _post(service, f"Bearer {token(issuer, exp=1)}")
    assert expired.status_code == 401 and expired.json()["reason"] == "expired"
    assert expired.headers["WWW-Authenticate"] == (
        'Bearer realm="securechat", error="invalid_token", error_description="expired"'
    )
    audience = _post(service, f"Bearer {token(issuer, aud='elsewhere')}")
    assert (audience.status_code, audience.json()["reason"]) == (401, "wrong_audience")
    scope = _post(service, f"Bearer {token(issuer, scope='infer')}")
    assert scope.status_code == 403 and (scope.json()["reason"], scope.json()["scope"]) == (
        "scope_missing",
        "collections:write",
    )
    assert (
        scope.headers["WWW-Authenticate"]
        == 'Bearer realm="securechat", error="insufficient_scope", scope="collections:write"'
    )
    mismatch = _post(service, f"Bearer {token(issuer)}", tenant="tenant2")
    assert mismatch.status_code == 403 and "WWW-Authenticate" not in mismatch.headers
    foreign = _post(service, f"Bearer {token(issuer, tenant='tenant2')}", tenant="tenant2")
    assert (foreign.status_code, foreign.json()["reason"]) == (403, "tenant_not_allowed")
    missing = _post(service, None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="securechat"'


def test_forged_tokens_never_get_a_5xx_nor_a_log_line_with_the_token(
    service: LocalService, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    good = token(issuer)
    header, payload, signature = good.split(".")
    forged = [
        f"{header}.{payload}.{signature[:-4]}AAAA",
        f"{header}.{payload[:-2]}x.{signature}",
        "eyJ" + "A" * 8000 + ".e30.",
        "eyJhbGciOiJub25lIn0.e30.",
        "eyJ.eyJ.eyJ",
        good + "." + good,
    ]
    with caplog.at_level(logging.DEBUG):
        for value in forged:
            answer = _post(service, f"Bearer {value}")
            assert answer.status_code == 401, value[:40]
    assert "token_refused" in caplog.text
    for value in (good, payload, signature):
        assert value not in caplog.text


def test_tokens_and_api_keys_share_the_tenants_limits(
    trust: TrustFiles, issuer: LocalIssuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["tenants", "--db", str(tmp_path / "tenants.db"), "--server-secret", str(tmp_path / "secret")]
    assert main([*store, "add", "tenant1"]) == 0
    api_key = capsys.readouterr().out.strip()
    policy = TenantPolicy(requests_per_minute=2)
    settings = IssuerSettings.model_validate(issuer.settings())
    with serve_gateway(
        [make_worker("w0", trust.root)], tenants_dir=tmp_path, default_policy=policy, issuers=[settings]
    ) as running:
        body = {"tenant_id": "tenant1", "region": REGION, "prompt": "Hi"}
        by_key = httpx.post(
            f"{running.url}/infer", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
        by_token = httpx.post(
            f"{running.url}/infer", json=body, headers={"Authorization": f"Bearer {token(issuer)}"}, timeout=10
        )
        third = httpx.post(
            f"{running.url}/infer", json=body, headers={"Authorization": f"Bearer {token(issuer)}"}, timeout=10
        )
    assert (by_key.status_code, by_token.status_code) == (200, 200)
    assert third.status_code == 429 and third.json()["error"] == "rate_limited"


def _token_command(tmp_path: Path, issuer: LocalIssuer, counter: Path) -> str:
    """A command that prints a fresh token each run (as an OIDC helper would), counting its runs."""
    script = tmp_path / "print_token.py"
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for index in range(5):
        (tokens / str(index)).write_text(token(issuer))
    script.write_text(
        "import pathlib, sys\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "n = int(counter.read_text()) if counter.exists() else 0\n"
        "counter.write_text(str(n + 1))\n"
        f"print(pathlib.Path({str(tokens)!r}, str(n)).read_text())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"{sys.executable} {script}"


def test_the_cli_and_the_proxy_take_a_token_command(
    service: LocalService, trust: TrustFiles, issuer: LocalIssuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counter = tmp_path / "runs"
    command = _token_command(tmp_path, issuer, counter)
    flags = [*trust.cli_flags(service.url), "--token-command", command]
    assert main(["chat", "Hi", *flags]) == 0
    assert capsys.readouterr().out == "Hello, world\n"
    keyring = ["--keyring", str(tmp_path / "keyring.json")]
    assert main(["collections", "create", "--name", "notes", *flags, *keyring]) == 0
    assert main(["collections", "list", *flags, *keyring]) == 0
    assert "notes" in capsys.readouterr().out
    assert int(counter.read_text()) == 3  # one run per process (a token lives 5 minutes)
    config = trust.client_config(service.url, token_command=("/bin/sh", "-c", command))
    with serve_asgi(create_proxy_app(lambda: SecureChatClient(config)), lifespan="on") as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for _ in range(2):
            reply = api.chat.completions.create(model="securechat", messages=[{"role": "user", "content": "Hi"}])
            assert reply.choices[0].message.content == "Hello, world"
        assert api.vector_stores.create(name="notes").id
    assert int(counter.read_text()) == 4  # the proxy ran it once and kept the token while it was valid


def test_an_issuer_never_reached_is_a_503(trust: TrustFiles, tmp_path: Path) -> None:
    silent = IssuerSettings(issuer="http://127.0.0.1:9", audience="a", tenants=("tenant1",))
    with serve_gateway([make_worker("w0", trust.root)], tenants_dir=tmp_path, issuers=[silent]) as running:
        forged = LocalIssuer(tmp_path / "forger")
        kid = forged.add_key("ES256")
        value = forged.token(kid, iss="http://127.0.0.1:9")
        answer = _post(running, f"Bearer {value}")
    assert (
        answer.status_code == 503 and answer.json()["error"] == "issuer_unavailable" and "Retry-After" in answer.headers
    )
