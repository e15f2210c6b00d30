"""``securechat tenants``: add prints the key once, list and revoke never show secrets."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from securechat.db.postgres import PostgresDatabase
from securechat.tenants.cli import add_tenant_commands
from securechat.tenants.store import TenantStore


def run(tmp_path: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="securechat")
    add_tenant_commands(parser.add_subparsers(metavar="COMMAND", required=True))
    args = parser.parse_args(
        ["tenants", "--db", str(tmp_path / "t.sqlite3"), "--server-secret", str(tmp_path / "secret"), *argv]
    )
    code: int = args.command(args)
    return code


def test_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="securechat")
    assert run(tmp_path, "add", "acme") == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert out.count("\n") == 1 and key.startswith("sc_")  # stdout carries the key alone, for piping
    assert "only time" in err and "not stored" in err and key not in err
    key_id = key.split("_")[1]
    with TenantStore(tmp_path / "t.sqlite3", tmp_path / "secret") as store:
        assert store.authenticate(key) == "acme"

    assert run(tmp_path, "add", "globex") == 0
    capsys.readouterr()
    assert run(tmp_path, "list") == 0
    out, _ = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["TENANT", "KEY_ID"] and len(lines) == 3
    assert "acme" in lines[1] and key_id in lines[1] and lines[1].endswith("active")
    assert key.split("_")[2] not in out

    assert run(tmp_path, "revoke", key_id) == 0
    assert run(tmp_path, "list", "acme") == 0
    out, _ = capsys.readouterr()
    assert out.strip().splitlines()[1].endswith("revoked")
    assert run(tmp_path, "revoke", key_id) == 1
    assert "no active key" in capsys.readouterr().err
    assert key.split("_")[2] not in caplog.text


def test_add_refuses_bad_tenant_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "add", "bad tenant") == 2
    out, err = capsys.readouterr()
    assert out == "" and "error" in err


def test_policy_set_show_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "policy", "acme", "--set", '{"requests_per_minute": 30}') == 0
    assert capsys.readouterr().out.strip() == '{"requests_per_minute":30}'
    assert run(tmp_path, "policy", "acme", "--set", '{"requests_per_minute": 0}') == 2
    assert run(tmp_path, "policy", "acme") == 0
    assert capsys.readouterr().out.strip().endswith('{"requests_per_minute":30}')
    assert run(tmp_path, "policy", "acme", "--clear") == 0
    assert capsys.readouterr().out.strip() == "{}"


def test_keys_added_with_a_database_url_live_in_postgresql(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, "--database-url", postgres_url, "add", "acme") == 0
    key = capsys.readouterr().out.strip()
    assert not (tmp_path / "t.sqlite3").exists()  # nothing went to the SQLite file
    with PostgresDatabase(postgres_url) as database, TenantStore(database, tmp_path / "secret") as store:
        assert store.authenticate(key) == "acme"


def test_every_command_works_on_postgresql_and_reads_create_no_secret(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--database-url", postgres_url)
    assert run(tmp_path, *url, "add", "globex") == 0
    key_id = capsys.readouterr().out.strip().split("_")[1]
    assert run(tmp_path, *url, "list", "globex") == 0
    assert capsys.readouterr().out.strip().splitlines()[1].split()[:2] == ["globex", key_id]
    assert run(tmp_path, *url, "policy", "globex", "--set", '{"requests_per_minute": 7}') == 0
    assert run(tmp_path, *url, "policy", "globex") == 0
    assert capsys.readouterr().out.strip().endswith('{"requests_per_minute":7}')
    assert run(tmp_path, *url, "revoke", key_id) == 0
    assert run(tmp_path, *url, "list", "globex") == 0
    assert capsys.readouterr().out.strip().splitlines()[1].endswith("revoked")
    assert not (tmp_path / "t.sqlite3").exists()

    # A machine without the gateways' server secret: read-only commands refuse and create no secret of their own.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (("list",), ("revoke", key_id), ("policy", "globex")):
        assert run(elsewhere, *url, *command) == 2
        assert "no server secret at" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []
