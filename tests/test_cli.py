"""The ``securechat`` command line: key files, manifests that match what workers measure, attest and chat."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deployments.worker import make_attester
from securechat.attestation import load_manifest, load_release_public, load_root_public, new_nonce, root_id
from securechat.attestation.policy import SNP_TCB_FLOORS
from securechat.attestation.sev_snp.emulator import emulated_launch_measurement
from securechat.cli import main
from securechat.config import AppSettings
from securechat.keys import Suite, WorkerKeys
from securechat.worker import WorkerIdentity
from tests.client_harness import REGION, REGISTERS, LocalService, TrustFiles, make_worker, serve_gateway


@pytest.mark.parametrize("command", ["root", "release-key"])
def test_key_init_writes_a_private_0600_key_and_prints_the_pub_path(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys" / "key.pem"
    assert main([command, "init", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert f"public key: {path}.pub" in out
    if command == "root":
        assert f"root id: {root_id(load_root_public(Path(f'{path}.pub')))}" in out
    before = path.read_bytes()
    assert main([command, "init", "--path", str(path)]) == 2  # never overwrites: --force decides
    assert "exists" in capsys.readouterr().err and path.read_bytes() == before
    assert main([command, "init", "--path", str(path), "--force"]) == 0
    assert path.read_bytes() != before and stat.S_IMODE(path.stat().st_mode) == 0o600


def _serve_config(tmp_path: Path, *, debug: bool, suites: list[str] | None = None) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "config.json").write_text('{"model_type": "qwen2"}')
    (model_dir / "model.safetensors").write_bytes(b"\x00weights" * 100)
    args = {
        "regions": [{"name": REGION}, {"name": "eu-west-1", "engine": {"model": str(model_dir), "max_new_tokens": 9}}],
        "engine": {"kind": "hf", "model": str(model_dir), "dtype": "fp32", "device": "cpu", "max_new_tokens": 64},
        "attestation": {"root_key_path": str(tmp_path / "root.pem"), "debug": debug},
    }
    if suites is not None:
        args["sealing"] = {"suites": suites}
    config = {"applications": [{"name": "securechat", "import_path": "deployments.app:build_app", "args": args}]}
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("region", "debug"), [(REGION, False), ("eu-west-1", False), (REGION, True)])
def test_manifest_build_signs_exactly_what_a_worker_measures(
    region: str, debug: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = _serve_config(tmp_path, debug=debug)
    release_key = tmp_path / "release.pem"
    assert main(["release-key", "init", "--path", str(release_key)]) == 0
    out_path = tmp_path / "out" / "manifest.json"
    argv = ["manifest", "build", "--config", str(config_path), "--region", region, "--out", str(out_path)]
    assert main([*argv, "--release-key", str(release_key), "--release", "r1"]) == 0
    out = capsys.readouterr().out

    signed = load_manifest(out_path)
    assert signed.verify(load_release_public(Path(f"{release_key}.pub")))
    assert (signed.manifest.name, signed.manifest.release) == ("securechat", "r1")
    settings = AppSettings.model_validate(yaml.safe_load(config_path.read_text())["applications"][0]["args"])
    identity = WorkerIdentity("w0", region, WorkerKeys.generate().public_keys)
    attester = make_attester(identity, settings)
    measured = dict(attester.attest(new_nonce()).registers)
    assert {name: set(values) for name, values in signed.manifest.registers.items()} == {
        name: {value} for name, value in measured.items()
    }
    assert all(value in out for value in measured.values())
    assert signed.manifest.suites == (Suite.HPKE_MLKEM768_X25519,)
    assert "suites   hpke-mlkem768x25519-hkdf-sha256-aes256gcm" in out


def test_manifest_build_writes_the_profiles_suites_and_warns_about_classical_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suites = [Suite.HPKE_MLKEM768_X25519.value, Suite.HPKE_X25519.value]
    release_key = tmp_path / "release.pem"
    main(["release-key", "init", "--path", str(release_key)])
    out_path = tmp_path / "manifest.json"
    argv = ["manifest", "build", "--config", str(_serve_config(tmp_path, debug=False, suites=suites))]
    assert main([*argv, "--release-key", str(release_key), "--out", str(out_path)]) == 0
    assert [suite.value for suite in load_manifest(out_path).manifest.suites] == suites
    assert "sealing.suites allows classical suites (hpke-x25519-hkdf-sha256-aes256gcm)" in capsys.readouterr().err


def test_manifest_build_names_the_platform_its_workers_must_prove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _serve_config(tmp_path, debug=False)
    release_key = tmp_path / "release.pem"
    main(["release-key", "init", "--path", str(release_key)])
    capsys.readouterr()

    def build(*flags: str) -> tuple[int, str]:
        out = tmp_path / "manifest.json"
        out.unlink(missing_ok=True)
        code = main(
            ["manifest", "build", "--config", str(config), "--release-key", str(release_key), "--out", str(out), *flags]
        )
        return code, capsys.readouterr().err

    assert build()[0] == 0  # the config's own platform: simulated, and a warning that says so
    assert load_manifest(tmp_path / "manifest.json").manifest.platforms.simulated
    assert build("--platform", "simulated")[1].count("no hardware protects its workers") == 1

    assert build("--platform", "emulated-sev-snp") == (0, "")
    settings = AppSettings.model_validate(yaml.safe_load(config.read_text())["applications"][0]["args"])
    code = dict(
        make_attester(WorkerIdentity("w0", REGION, WorkerKeys.generate().public_keys), settings)
        .attest(new_nonce())
        .registers
    )["code"]
    emulated = load_manifest(tmp_path / "manifest.json").manifest.platforms
    assert not emulated.simulated and emulated.tdx is None and emulated.sev_snp is not None
    assert emulated.sev_snp.measurements == {emulated_launch_measurement(code)}

    code_, err = build("--platform", "sev-snp")
    assert code_ == 2 and "--snp-measurement" in err and not (tmp_path / "manifest.json").exists()
    snp_flags = ["--platform", "sev-snp", "--snp-measurement", "AB" * 48]
    assert build(*snp_flags, "--snp-min-tcb", "snp=22")[0] == 2  # which line's floor?
    assert build(*snp_flags, "--snp-min-tcb", "Milan:snp=25")[0] == 2  # a line the release does not accept
    assert build(*snp_flags, "--snp-min-tcb", "Genoa:snp=24") == (0, "")
    snp = load_manifest(tmp_path / "manifest.json").manifest.platforms.sev_snp
    assert snp is not None and snp.measurements == {"ab" * 48} and set(snp.min_tcb) == {"Genoa", "Turin"}
    assert dict(snp.min_tcb["Genoa"]) == {**SNP_TCB_FLOORS["Genoa"], "snp": 24}
    assert dict(snp.min_tcb["Turin"]) == SNP_TCB_FLOORS["Turin"]
    code_, err = build(*snp_flags, "--snp-product", "Milan")
    assert code_ == 0 and "accepts AMD Milan" in err
    snp = load_manifest(tmp_path / "manifest.json").manifest.platforms.sev_snp
    assert snp is not None and set(snp.min_tcb) == {"Milan"}

    assert build("--platform", "tdx", "--tdx-rtmr", "0=aa")[0] == 2  # MRTD first
    assert build("--platform", "tdx", "--tdx-mrtd", "cd" * 48, "--tdx-rtmr", "5=aa")[0] == 2
    assert build("--platform", "tdx", "--tdx-mrtd", "cd" * 48, "--tdx-allow-status", "SWHardeningNeeded")[0] == 0
    tdx = load_manifest(tmp_path / "manifest.json").manifest.platforms.tdx
    assert tdx is not None and dict(tdx.measurements) == {"mrtd": {"cd" * 48}}
    assert tdx.tcb_statuses == {"SWHardeningNeeded"}


def test_manifest_build_reports_an_unknown_region(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    release_key = tmp_path / "release.pem"
    main(["release-key", "init", "--path", str(release_key)])
    argv = ["manifest", "build", "--config", str(_serve_config(tmp_path, debug=False)), "--region", "mars-1"]
    assert main([*argv, "--release-key", str(release_key), "--out", str(tmp_path / "m.json")]) == 2
    assert "mars-1" in capsys.readouterr().err and not (tmp_path / "m.json").exists()


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture
def service(trust: TrustFiles) -> Iterator[LocalService]:
    bad = make_worker("w-bad", trust.root, {**REGISTERS, "config": "66" * 32})
    with serve_gateway([make_worker("w-good", trust.root), bad]) as running:
        yield running


def test_attest_prints_verified_workers_and_refusals(
    service: LocalService, trust: TrustFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["attest", *trust.cli_flags(service.url)]) == 0
    out = capsys.readouterr().out
    good = service.pool.workers["replica-0"].identity.public_keys[0]
    assert "region us-west-1: 1 verified, 1 refused" in out
    assert "verified w-good" in out and good.key_id in out and "keys expire 20" in out
    assert f"register code     {REGISTERS['code']}" in out
    assert "refused  #1 (w-bad): register_not_allowed:config" in out


def test_a_client_sealing_only_with_a_suite_the_manifest_does_not_allow_sends_nothing(
    service: LocalService, trust: TrustFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", "Hi", "--suite", "x25519", *trust.cli_flags(service.url)]) == 1
    assert "none with a key of a suite this client seals with (hpke-x25519" in capsys.readouterr().err
    assert service.paths["/infer"] == 0


def test_attest_exits_non_zero_when_none_verify(
    trust: TrustFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_gateway([make_worker("w0", trust.root, debug=True)]) as service:
        assert main(["attest", *trust.cli_flags(service.url)]) == 1
    captured = capsys.readouterr()
    assert "refused  #0 (w0): debug_enabled" in captured.out and "no worker in region" in captured.err


def test_chat_streams_the_decrypted_answer(
    service: LocalService, trust: TrustFiles, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = trust.cli_flags(service.url)
    tenant_at = flags.index("--tenant")
    del flags[tenant_at : tenant_at + 2]
    monkeypatch.setenv("SECURECHAT_TENANT", "tenant1")  # the tenant from the environment
    assert main(["chat", "Hi", "--max-new-tokens", "8", "--seed", "1", *flags]) == 0
    assert capsys.readouterr().out == "Hello, world\n"
    assert service.paths["/infer"] == 1


def test_chat_without_a_tenant_is_an_error(
    trust: TrustFiles, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECURECHAT_TENANT", raising=False)
    flags = trust.cli_flags("http://127.0.0.1:9")
    del flags[flags.index("--tenant") : flags.index("--tenant") + 2]
    assert main(["chat", "Hi", *flags]) == 2  # local setup (securechat/cli_exit.py)
    assert "SECURECHAT_TENANT" in capsys.readouterr().err


def test_a_key_from_tenants_add_authenticates_chat(
    trust: TrustFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["tenants", "--db", str(tmp_path / "tenants.db"), "--server-secret", str(tmp_path / "secret")]
    with serve_gateway([make_worker("w0", trust.root)], tenants_dir=tmp_path) as service:
        assert main([*store, "add", "tenant1"]) == 0
        key_file = tmp_path / "api-key"
        key_file.write_text(capsys.readouterr().out)
        assert main(["chat", "Hi", *trust.cli_flags(service.url), "--api-key-file", str(key_file)]) == 0
        assert capsys.readouterr().out == "Hello, world\n"
        assert main(["chat", "Hi", *trust.cli_flags(service.url)]) == 1
        assert "unauthorized (HTTP 401)" in capsys.readouterr().err
