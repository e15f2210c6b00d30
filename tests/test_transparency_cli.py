"""``securechat log ...`` driven through ``securechat.cli.main``, and the witness as a process of its own."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import load_release_key, save_manifest
from securechat.cli import main
from securechat.transparency import SignatureType, read_vkey
from securechat.transparency.note import parse_note
from tests.transparency_harness import ORIGIN, manifest

WITNESS = "witness.example/w1"


@dataclass
class Files:
    root: Path
    log_vkey: str
    witness_vkey: str

    @property
    def db(self) -> Path:
        return self.root / "log.sqlite3"

    @property
    def key(self) -> Path:
        return self.root / "keys/log-key.pem"

    @property
    def wdb(self) -> Path:
        return self.root / "witness/state.sqlite3"

    @property
    def wkey(self) -> Path:
        return self.root / "witness/key.pem"

    @property
    def state(self) -> Path:
        return self.root / "client/last-seen.json"

    @property
    def release_key(self) -> Path:
        return self.root / "keys/release.pem"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _manifest_file(root: Path, number: int) -> Path:
    path = root / f"manifest-{number}.json"
    save_manifest(path, manifest(load_release_key(root / "keys/release.pem"), number))
    return path


@pytest.fixture
def files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Files:
    """A release key, a log and a witness watching it, all made with the CLI."""
    assert main(["release-key", "init", "--path", str(tmp_path / "keys/release.pem")]) == 0
    db, key = tmp_path / "log.sqlite3", tmp_path / "keys/log-key.pem"
    code, out, _ = _run(["log", "init", "--db", str(db), "--key", str(key), "--origin", ORIGIN], capsys)
    assert code == 0
    log_vkey = out.strip().splitlines()[-1]
    assert (tmp_path / "keys/log-key.pem.vkey").read_text().strip() == log_vkey
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(db.stat().st_mode) == 0o600
    wdb, wkey = tmp_path / "witness/state.sqlite3", tmp_path / "witness/key.pem"
    argv = ["log", "witness", "init", "--name", WITNESS, "--log-vkey", log_vkey, "--db", str(wdb), "--key", str(wkey)]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    witness_vkey = out.strip().splitlines()[-1]
    assert read_vkey(witness_vkey).signature_type is SignatureType.COSIGNATURE_V1
    return Files(tmp_path, log_vkey, witness_vkey)


def test_offline_flow_append_checkpoint_cosign_prove_verify(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    release_pub = str(files.release_key) + ".pub"
    first, second, stranger = (_manifest_file(files.root, number) for number in (0, 1, 2))
    for path, index in ((first, 0), (second, 1)):
        code, out, _ = _run(["log", "append", str(path), "--db", str(files.db), "--release-pub", release_pub], capsys)
        assert code == 0 and f"at index {index}" in out
    code, _, err = _run(["log", "append", str(first), "--db", str(files.db), "--release-pub", release_pub], capsys)
    assert code == 1 and "already in the log at index 0" in err

    code, note, _ = _run(["log", "checkpoint", "--db", str(files.db), "--key", str(files.key)], capsys)
    assert code == 0 and note.startswith(f"{ORIGIN}\n2\n")
    code, body, _ = _run(["log", "witness-request", "--db", str(files.db), "--old-size", "0"], capsys)
    (files.root / "request").write_text(body)
    witness_argv = ["log", "witness", "cosign", str(files.root / "request"), "--db", str(files.wdb)]
    code, line, _ = _run([*witness_argv, "--key", str(files.wkey)], capsys)
    assert code == 0 and line.startswith(f"\u2014 {WITNESS} ")
    (files.root / "cosignatures").write_text(line)
    cosign_argv = ["log", "cosign", str(files.root / "cosignatures"), "--db", str(files.db)]
    code, cosigned, _ = _run([*cosign_argv, "--witness-vkey", files.witness_vkey], capsys)
    assert code == 0 and len(parse_note(cosigned).signatures) == 2

    code, evidence, _ = _run(["log", "prove", str(second), "--db", str(files.db)], capsys)
    assert code == 0 and json.loads(evidence)["leaf_index"] == 1
    (files.root / "evidence.json").write_text(evidence)
    code, out, _ = _run(_verify_argv(files, second, files.root / "evidence.json"), capsys)
    assert code == 0 and f"is leaf 1 of {ORIGIN} at size 2, cosigned by {WITNESS}" in out
    assert json.loads(files.state.read_text())["logs"][ORIGIN]["size"] == 2

    code, evidence, err = _run(["log", "prove", str(stranger), "--db", str(files.db)], capsys)
    assert code == 1 and json.loads(evidence)["leaf_index"] is None and "not in the latest checkpoint" in err
    (files.root / "stranger.json").write_text(evidence)
    code, _, err = _run(_verify_argv(files, stranger, files.root / "stranger.json"), capsys)
    assert code == 1 and "refused: not_in_log" in err

    code, body, _ = _run(["log", "witness-request", "--db", str(files.db), "--old-size", "1"], capsys)
    (files.root / "request").write_text(body)
    code, _, err = _run([*witness_argv, "--key", str(files.wkey)], capsys)
    assert code == 1 and "refused: old_size_mismatch (last cosigned size 2)" in err


def _verify_argv(files: Files, manifest_path: Path, evidence_path: Path) -> list[str]:
    return [
        *("log", "verify", str(manifest_path), "--evidence", str(evidence_path)),
        *("--log-vkey", files.log_vkey, "--witness-vkey", files.witness_vkey, "--state", str(files.state)),
    ]


def test_operator_errors_are_one_line_with_the_cli_exit_codes(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    # 2: the operator's to fix here; 1: the operation itself failed (securechat/cli_exit.py)
    code, _, err = _run(["log", "init", "--db", str(files.db), "--key", str(files.root / "k2.pem")], capsys)
    assert code == 2 and "exists" in err
    code, _, err = _run(["log", "prove", str(_manifest_file(files.root, 0)), "--db", str(files.db)], capsys)
    assert code == 2 and "no checkpoint signed yet" in err
    foreign = files.root / "foreign.json"
    save_manifest(foreign, manifest(ed25519.Ed25519PrivateKey.generate(), 5))
    argv = ["log", "append", str(foreign), "--db", str(files.db), "--release-pub", str(files.release_key) + ".pub"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "not signed by a release key" in err
    code, _, err = _run(["log", "checkpoint", "--db", str(files.root / "absent.sqlite3")], capsys)
    assert code == 2 and "no transparency log" in err
    unreachable = ["log", "checkpoint", "--db", str(files.db), "--key", str(files.key)]
    code, out, err = _run([*unreachable, "--witness", "http://127.0.0.1:9", files.witness_vkey], capsys)
    assert code == 1 and "unreachable" in err and out.startswith(f"{ORIGIN}\n0\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_witness_serves_as_its_own_process(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    release_pub = str(files.release_key) + ".pub"
    for number in range(3):
        argv = ["log", "append", str(_manifest_file(files.root, number)), "--db", str(files.db)]
        assert main([*argv, "--release-pub", release_pub]) == 0
    port = _free_port()
    command = [sys.executable, "-m", "securechat.cli", "log", "witness", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--db", str(files.wdb), "--key", str(files.wkey)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/add-checkpoint", timeout=1).status_code == 405:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "witness process did not come up"
            time.sleep(0.2)
        checkpoint = ["log", "checkpoint", "--db", str(files.db), "--key", str(files.key)]
        code, note, _ = _run([*checkpoint, "--witness", url, files.witness_vkey], capsys)
        assert code == 0
        assert [signature.name for signature in parse_note(note).signatures] == [ORIGIN, WITNESS]
    finally:
        process.terminate()
        process.wait(timeout=10)
