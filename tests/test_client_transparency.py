"""Clients that pin a release log: the gateway serves it at /v1/transparency/..., and the SDK, CLI and proxy seal
nothing unless the pinned manifest is in it, signed, cosigned and consistent with what they saw before."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from securechat.attestation import SignedManifest, load_manifest, load_release_key
from securechat.cli import main
from securechat.client import ReleaseNotLogged, SecureChatClient
from securechat.proxy.app import create_proxy_app
from securechat.transparency import (
    NoteSigner,
    ReleaseLog,
    SqliteLogStore,
    SqliteWitnessState,
    Witness,
    WitnessRefusal,
    manifest_leaf_hash,
    open_log,
    read_vkey,
)
from securechat.transparency.note import parse_note, parse_signature_lines
from tests.client_harness import LocalService, TrustFiles, make_worker, serve_asgi, serve_gateway
from tests.transparency_harness import ORIGIN, log_signer, manifest, new_witness, serving, witness_signer

WITNESS = "witness.example/w1"


@dataclass
class Release:
    """A log (behind a directory symlink the test can re-point, as a log operator showing another view would),
    its key, one witness, and the TrustFiles manifest that the workers' registers match."""

    root: Path
    trust: TrustFiles
    signer: NoteSigner
    witness: Witness

    @property
    def served_path(self) -> Path:
        return self.root / "current" / "log.sqlite3"

    @property
    def pinned(self) -> SignedManifest:
        return load_manifest(self.trust.manifest)

    def new_log(self, name: str) -> ReleaseLog:
        (self.root / name).mkdir()
        return ReleaseLog(SqliteLogStore.create(self.root / name / "log.sqlite3", ORIGIN))

    def show(self, name: str) -> None:
        """Point the gateway at the log in directory ``name``."""
        link = self.root / "next"
        link.symlink_to(self.root / name, target_is_directory=True)
        os.replace(link, self.root / "current")

    def other(self, number: int) -> SignedManifest:
        """Another release, signed by the same release key (its registers match no worker)."""
        return manifest(load_release_key(self.trust.directory / "release.pem"), number)

    def append(self, log: ReleaseLog, *signed: SignedManifest) -> None:
        for item in signed:
            log.append(item, [load_release_key(self.trust.directory / "release.pem").public_key()])

    def publish(self, log: ReleaseLog, *, cosign: bool = True) -> None:
        note = log.sign_checkpoint(self.signer)
        if not cosign:
            return
        size = log.size()
        try:
            line = self.witness.cosign(note, 0, [])
        except WitnessRefusal as refusal:
            assert refusal.latest_size is not None
            line = self.witness.cosign(note, refusal.latest_size, log.consistency_proof(refusal.latest_size, size))
        log.add_cosignatures(size, parse_signature_lines(line), [self.witness.verifier])

    def client_overrides(self, *, min_witnesses: int | None = None) -> dict[str, object]:
        (self.root / "log.vkey").write_text(self.signer.verifier.to_vkey() + "\n")
        (self.root / "witness.vkey").write_text(self.witness.verifier.to_vkey() + "\n")
        return {
            "log_vkey_path": self.root / "log.vkey",
            "witness_vkey_paths": (self.root / "witness.vkey",),
            "min_witnesses": min_witnesses,
            "log_state_path": self.root / "client" / "last-seen.json",
        }

    def cli_flags(self, url: str) -> list[str]:
        overrides = self.client_overrides()
        return [
            *self.trust.cli_flags(url),
            *("--log-vkey-file", str(overrides["log_vkey_path"])),
            *("--witness-vkey-file", str(self.root / "witness.vkey")),
            *("--log-state", str(overrides["log_state_path"])),
        ]


@pytest.fixture
def release(tmp_path: Path) -> Release:
    trust = TrustFiles.create(tmp_path / "trust")
    signer = log_signer()
    return Release(tmp_path, trust, signer, new_witness(tmp_path, signer, WITNESS))


@pytest.fixture
def published(release: Release) -> Iterator[tuple[Release, LocalService]]:
    """A log holding an older release and the pinned one, checkpointed and cosigned; a gateway serving it."""
    log = release.new_log("a")
    release.append(log, release.other(1), release.pinned)
    release.publish(log)
    log.close()
    release.show("a")
    with serve_gateway([make_worker("w0", release.trust.root)], transparency_log=release.served_path) as service:
        yield release, service


def _client(release: Release, service: LocalService, **overrides: object) -> SecureChatClient:
    return SecureChatClient(release.trust.client_config(service.url, **{**release.client_overrides(), **overrides}))


def _refusal(release: Release, service: LocalService, **overrides: object) -> ReleaseNotLogged:
    before = (service.paths["/v1/attestation"], service.paths["/infer"])
    with _client(release, service, **overrides) as client, pytest.raises(ReleaseNotLogged) as refused:
        client.complete("Hi")
    assert (service.paths["/v1/attestation"], service.paths["/infer"]) == before  # nothing was sealed or sent
    return refused.value


def test_a_logged_cosigned_release_is_accepted_and_the_checkpoint_remembered(
    published: tuple[Release, LocalService],
) -> None:
    release, service = published
    with _client(release, service) as client:
        assert client.complete("Hi").text == "Hello, world"
        assert client.release is not None
        assert (client.release.leaf_index, client.release.checkpoint.size) == (1, 2)
        assert client.release.witnesses == (WITNESS,)
    assert '"size": 2' in (release.root / "client" / "last-seen.json").read_text()
    # A log that stops growing is not a failure: the same checkpoint again is accepted.
    with _client(release, service) as client:
        assert client.complete("Hi").text == "Hello, world"


def test_a_manifest_not_in_the_log_is_refused(release: Release) -> None:
    log = release.new_log("a")
    release.append(log, release.other(1))
    release.publish(log)
    log.close()
    release.show("a")
    with serve_gateway([make_worker("w0", release.trust.root)], transparency_log=release.served_path) as service:
        assert _refusal(release, service).reason == "not_in_log"
        # Appended but not yet checkpointed is still not in the log a client can check.
        with open_log(release.served_path) as served:
            release.append(served, release.pinned)
        assert _refusal(release, service).reason == "not_in_log"


def test_a_missing_witness_cosignature_is_refused_unless_not_required(release: Release) -> None:
    log = release.new_log("a")
    release.append(log, release.pinned)
    release.publish(log, cosign=False)
    log.close()
    release.show("a")
    with serve_gateway([make_worker("w0", release.trust.root)], transparency_log=release.served_path) as service:
        assert _refusal(release, service).reason == "missing_witness_cosignatures"
        with _client(release, service, min_witnesses=0) as client:
            assert client.complete("Hi").text == "Hello, world"


def test_a_split_view_and_a_rollback_are_refused(published: tuple[Release, LocalService]) -> None:
    release, service = published
    with _client(release, service) as client:
        client.complete("Hi")  # this client now stands at size 2 of log "a"
    # A fork under the same origin and key: other leaves before the pinned release, a bigger tree.
    fork = release.new_log("fork")
    release.append(fork, release.other(7), release.other(8), release.pinned)
    fork.sign_checkpoint(release.signer)  # the witness would refuse to cosign it: require none
    fork.close()
    release.show("fork")
    assert _refusal(release, service, min_witnesses=0).reason == "inconsistent_with_last_seen"
    # The same log, honestly grown: accepted, and the client moves forward.
    with open_log(release.root / "a" / "log.sqlite3") as grown:
        release.append(grown, release.other(9))
        release.publish(grown)
    release.show("a")
    with _client(release, service) as client:
        client.complete("Hi")
        assert client.release is not None and client.release.checkpoint.size == 3
    # A snapshot from before: rolled back.
    shutil.copytree(release.root / "a", release.root / "old")
    _roll_back(release.root / "old" / "log.sqlite3", to_size=2)
    release.show("old")
    assert _refusal(release, service).reason == "rollback"


def _roll_back(path: Path, *, to_size: int) -> None:
    """What an operator restoring an old backup serves: the checkpoints above ``to_size`` gone."""
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM checkpoints WHERE tree_size > ?", (to_size,))
    connection.close()


def test_a_tampered_inclusion_proof_is_refused(published: tuple[Release, LocalService]) -> None:
    release, service = published

    def tamper(request: httpx.Request) -> httpx.Response:
        answer = httpx.get(str(request.url))
        if request.url.path != "/v1/transparency/evidence":
            return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
        body = answer.json()
        body["inclusion_proof"][0] = body["inclusion_proof"][0][::-1]
        return httpx.Response(200, json=body)

    config = release.trust.client_config(service.url, **release.client_overrides())
    with (
        httpx.Client(transport=httpx.MockTransport(tamper)) as http,
        SecureChatClient(config, http) as client,
        pytest.raises(ReleaseNotLogged) as refused,
    ):
        client.complete("Hi")
    assert refused.value.reason in ("bad_inclusion_proof", "malformed")
    assert service.paths["/infer"] == 0


def test_a_gateway_without_a_log_is_refused_by_a_client_that_pins_one(release: Release) -> None:
    with serve_gateway([make_worker("w0", release.trust.root)]) as service:
        refused = _refusal(release, service)
    assert (refused.reason, refused.status, refused.code) == ("log_unavailable", 404, "no_transparency_log")


def test_the_gateway_serves_checkpoint_entries_and_proofs(published: tuple[Release, LocalService]) -> None:
    release, service = published
    checkpoint = httpx.get(f"{service.url}/v1/transparency/checkpoint")
    assert checkpoint.status_code == 200 and checkpoint.headers["content-type"].startswith("text/plain")
    note = parse_note(checkpoint.text)
    assert note.text.startswith(f"{ORIGIN}\n2\n") and len(note.signatures) == 2  # the log's and the witness's
    entries = httpx.get(f"{service.url}/v1/transparency/entries", params={"start": 0, "end": 10}).json()  # clipped
    assert [entry["index"] for entry in entries["entries"]] == [0, 1]
    assert entries["entries"][1]["manifest"] == release.pinned.to_dict()
    leaf = manifest_leaf_hash(release.pinned).hex()
    evidence = httpx.get(f"{service.url}/v1/transparency/evidence", params={"leaf_hash": leaf}).json()
    assert evidence["leaf_index"] == 1 and len(evidence["inclusion_proof"]) == 1
    consistency = httpx.get(f"{service.url}/v1/transparency/consistency", params={"old_size": 1, "new_size": 2})
    assert consistency.status_code == 200 and len(consistency.json()["proof"]) == 1
    for path, params, status, code in (
        ("evidence", {"leaf_hash": "zz"}, 422, "invalid_request"),
        ("consistency", {"old_size": 2, "new_size": 5}, 422, "invalid_request"),
        ("entries", {"start": 5, "end": 6}, 422, "invalid_request"),
    ):
        answer = httpx.get(f"{service.url}/v1/transparency/{path}", params=params)
        assert (answer.status_code, answer.json()["error"]) == (status, code), path


def test_a_log_without_a_checkpoint_is_503(release: Release) -> None:
    release.new_log("a").close()
    release.show("a")
    with serve_gateway([make_worker("w0", release.trust.root)], transparency_log=release.served_path) as service:
        answer = httpx.get(f"{service.url}/v1/transparency/checkpoint")
    assert (answer.status_code, answer.json()["error"]) == (503, "no_checkpoint")


def test_cli_attest_reports_the_log_entry_and_refuses_with_the_reason(
    published: tuple[Release, LocalService], capsys: pytest.CaptureFixture[str]
) -> None:
    release, service = published
    assert main(["attest", *release.cli_flags(service.url)]) == 0
    assert f"release log: {ORIGIN}  entry 1 of 2, cosigned by {WITNESS}" in capsys.readouterr().out
    other = release.new_log("other")
    release.append(other, release.other(3), release.other(4), release.other(5))
    release.publish(other, cosign=False)
    other.close()
    release.show("other")
    assert main(["chat", "Hi", *release.cli_flags(service.url), "--min-witnesses", "0"]) == 1
    captured = capsys.readouterr()
    assert "transparency check: inconsistent_with_last_seen" in captured.err and captured.out == ""


def test_the_proxy_answers_502_release_not_logged(release: Release) -> None:
    with serve_gateway([make_worker("w0", release.trust.root)]) as service:
        with serve_asgi(create_proxy_app(lambda: _client(release, service))) as proxy:
            answer = httpx.post(
                f"{proxy}/v1/chat/completions",
                json={"model": "securechat", "messages": [{"role": "user", "content": "Hi"}]},
            )
        assert service.paths["/infer"] == 0
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "release_not_logged"
    assert "log_unavailable" in answer.json()["error"]["message"]


def test_the_chat_pages_panel_names_the_log_entry(published: tuple[Release, LocalService]) -> None:
    release, service = published
    with serve_asgi(create_proxy_app(lambda: _client(release, service))) as proxy:
        report = httpx.get(f"{proxy}/securechat/attestation").json()
    assert report["ok"] is True
    assert report["release_log"] == {"origin": ORIGIN, "entry": 1, "size": 2, "witnesses": [WITNESS]}


def test_the_operator_flow_through_the_cli_then_a_client_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`securechat log init/append/checkpoint --witness` (an HTTP witness), the gateway serving that database,
    and `securechat attest`/`chat` pinning the log and witness keys as files."""
    trust = TrustFiles.create(tmp_path / "trust")
    db, key = tmp_path / "log.sqlite3", tmp_path / "log-key.pem"
    assert main(["log", "init", "--db", str(db), "--key", str(key), "--origin", ORIGIN]) == 0
    log_vkey = read_vkey(capsys.readouterr().out.strip().splitlines()[-1])
    state = SqliteWitnessState.create(tmp_path / "witness.sqlite3", WITNESS)
    state.trust_log(log_vkey)
    witness = Witness(witness_signer(WITNESS), state)
    (tmp_path / "witness.vkey").write_text(witness.verifier.to_vkey())
    release_pub = str(trust.directory / "release.pem.pub")
    assert main(["log", "append", str(trust.manifest), "--db", str(db), "--release-pub", release_pub]) == 0
    with serving(witness) as witness_url:
        argv = ["log", "checkpoint", "--db", str(db), "--key", str(key)]
        assert main([*argv, "--witness", witness_url, witness.verifier.to_vkey()]) == 0
    capsys.readouterr()
    pins = ["--log-vkey-file", f"{key}.vkey", "--witness-vkey-file", str(tmp_path / "witness.vkey")]
    pins += ["--log-state", str(tmp_path / "client-state.json")]
    with serve_gateway([make_worker("w0", trust.root)], transparency_log=db) as service:
        assert main(["attest", *trust.cli_flags(service.url), *pins]) == 0
        assert f"release log: {ORIGIN}  entry 0 of 1, cosigned by {WITNESS}" in capsys.readouterr().out
        assert main(["chat", "Hi", *trust.cli_flags(service.url), *pins]) == 0
        assert capsys.readouterr().out == "Hello, world\n"
