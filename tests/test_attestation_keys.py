"""Platform root and release key files: permissions, refusal to overwrite, and private keys that never leak."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from securechat.attestation import (
    Attester,
    create_release_key,
    create_root,
    default_root_path,
    issue_document,
    load_release_key,
    load_root,
    load_root_public,
    root_id,
)
from securechat.attestation._keyfile import KeyFileError, public_path_for
from securechat.attestation.manifest import default_release_key_path
from securechat.attestation.platform_root import ROOT_PATH_ENV
from securechat.keys import WorkerKeys
from securechat.worker import WorkerIdentity

NOW = 1_700_000_000
NONCE = "ab" * 32
REGISTERS = {"code": "1" * 64, "config": "2" * 64, "model": "3" * 64}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_root_writes_0600_private_key_and_public_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "platform-root.pem"
    public = create_root(path)
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700
    assert load_root(path).public_key() == public
    assert load_root_public(public_path_for(path)) == public
    assert public_path_for(path).name == "platform-root.pem.pub"


def test_existing_parent_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    create_root(tmp_path / "root.pem")
    assert _mode(tmp_path) == 0o755


def test_create_root_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "root.pem"
    first = create_root(path)
    with pytest.raises(KeyFileError):
        create_root(path)
    assert load_root(path).public_key() == first
    second = create_root(path, force=True)
    assert second != first
    assert load_root(path).public_key() == second
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root.pem", "root.pem.pub"]  # no temp files left


def test_load_refuses_key_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "root.pem"
    create_root(path)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_root(path)


def test_load_refuses_missing_and_non_ed25519_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        load_root(tmp_path / "missing.pem")
    other = tmp_path / "x25519.pem"
    pem = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    other.write_bytes(pem)
    other.chmod(0o600)
    with pytest.raises(KeyFileError, match="Ed25519"):
        load_root(other)


def test_default_locations_and_environment_override(tmp_path: Path) -> None:
    assert default_root_path({}) == Path("~/.config/securechat/platform-root.pem").expanduser()
    assert default_root_path({ROOT_PATH_ENV: str(tmp_path / "r.pem")}) == tmp_path / "r.pem"
    assert default_release_key_path({}) == Path("~/.config/securechat/release-key.pem").expanduser()


def test_create_root_uses_the_environment_when_no_path_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ROOT_PATH_ENV, str(tmp_path / "env-root.pem"))
    public = create_root()
    assert load_root().public_key() == public
    assert _mode(tmp_path / "env-root.pem") == 0o600


def test_release_key_file_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "release.pem"
    public = create_release_key(path)
    assert _mode(path) == 0o600
    assert load_release_key(path).public_key() == public
    with pytest.raises(KeyFileError):
        create_release_key(path)


def test_root_id_is_sha256_of_spki_der() -> None:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert root_id(public) == hashlib.sha256(der).hexdigest()[:32]


def _secret_spellings(key: ed25519.Ed25519PrivateKey) -> list[str]:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return [raw.hex(), base64.b64encode(raw).decode(), base64.b64encode(der).decode()]


def test_private_keys_never_appear_in_documents_or_reprs() -> None:
    root = ed25519.Ed25519PrivateKey.generate()
    identity = WorkerIdentity("worker-1", "us-west-1", WorkerKeys.generate().public_keys)
    attester = Attester.simulated(root, identity, REGISTERS, key_ttl_s=600, now=NOW)
    document = attester.attest(NONCE, now=NOW)
    signing_key: ed25519.Ed25519PrivateKey = attester._source._signing_key  # type: ignore[attr-defined]  # test-only peek
    one_off = issue_document(root, identity, REGISTERS, NONCE, now=NOW, key_ttl_s=60)
    visible = " ".join([json.dumps(document.to_dict()), json.dumps(one_off.to_dict()), repr(document), repr(attester)])
    for secret in _secret_spellings(root) + _secret_spellings(signing_key):
        assert secret not in visible


def test_attester_refuses_pickling() -> None:
    root = ed25519.Ed25519PrivateKey.generate()
    identity = WorkerIdentity("worker-1", "us-west-1", WorkerKeys.generate().public_keys)
    attester = Attester.simulated(root, identity, REGISTERS, key_ttl_s=600, now=NOW)
    for holder in (attester, attester._source):
        with pytest.raises(TypeError):
            pickle.dumps(holder)
