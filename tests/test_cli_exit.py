"""The exit-code convention of every ``securechat`` command (securechat/cli_exit.py), through the real command."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from securechat.cli import main
from securechat.cli_exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tests.client_harness import TrustFiles

REPO = Path(__file__).resolve().parents[1]


def _securechat(*argv: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "securechat.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def test_version_and_help_name_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and re.fullmatch(r"securechat \S+\n", capsys.readouterr().out)
    with pytest.raises(SystemExit) as usage:
        main(["chat"])  # argparse: a missing argument is bad usage
    assert usage.value.code == 2
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "130 interrupted" in capsys.readouterr().out


def test_a_bad_server_secret_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not hex\n")
    secret.chmod(0o600)
    assert main(["tenants", "--db", str(tmp_path / "t.db"), "--server-secret", str(secret), "add", "acme"]) == 2
    err = capsys.readouterr().err
    assert err == "error: server secret file must hold 64 hex digits\n"
    secret.chmod(0o644)
    assert main(["tenants", "--db", str(tmp_path / "t.db"), "--server-secret", str(secret), "add", "acme"]) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_read_only_tenant_commands_create_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ["tenants", "--db", str(tmp_path / "t.db"), "--server-secret", str(tmp_path / "secret")]
    assert main([*store, "list"]) == 0
    assert "tenants add creates it" in capsys.readouterr().err
    assert main([*store, "policy", "acme"]) == 0
    assert capsys.readouterr().out == "{}\n"
    assert main([*store, "revoke", "0123456789abcdef"]) == 2
    assert "no tenant database" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the database nor a server secret was created


def test_a_database_that_cannot_be_reached_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://securechat:hunter2@127.0.0.1:{port}/tenants"
    store = ["tenants", "--database-url", url, "--server-secret", str(tmp_path / "secret")]
    assert main([*store, "add", "acme"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert f"127.0.0.1:{port}" in err and "hunter2" not in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    trust = TrustFiles.create(tmp_path / "trust")
    silent = socket.socket()  # accepts connections, never answers: the client waits until interrupted
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        flags = [*("--url", url, "--tenant", "t1", "--region", "us-east-1"), "--manifest", str(trust.manifest)]
        flags += ["--root-pub", str(trust.root_pub), "--release-pub", str(trust.release_pub)]
        process = _securechat("chat", "Hi", *flags)
        deadline = time.monotonic() + 30
        silent.settimeout(30)
        connection, _ = silent.accept()
        request = b""
        while b"\r\n\r\n" not in request:  # the attestation request has been sent, whole
            request += connection.recv(65536)
        # Now the client is (about to be) blocked reading the answer. A SIGINT that lands in the few bytecodes
        # before that read starts is noted but acted on only when the read returns (CPython checks signals between
        # bytecodes and on EINTR), so the signal is sent once it is surely inside the read.
        time.sleep(0.2)
        assert time.monotonic() < deadline
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        connection.close()
    finally:
        silent.close()
    assert process.returncode == 130
    assert "interrupted" in err and "Traceback" not in err


def test_the_clients_page_documents_the_same_codes() -> None:
    readme = (REPO / "docs" / "clients.md").read_text()
    section = readme[readme.index("**Exit codes**") :][:900]
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED):
        assert f"`{code}`" in section
