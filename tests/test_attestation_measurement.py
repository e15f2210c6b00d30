"""Registers are deterministic, cover every byte they claim to, and ignore what does not change the worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from securechat.attestation import measure_code, measure_config, measure_model, measure_worker, runtime_config
from securechat.attestation.measurement import _CHUNK_BYTES, CONFIG_FIELDS, default_package_dir
from securechat.config import SealingSettings, StreamSettings

ENGINE = {
    "kind": "hf",
    "model": "securechat/tiny-qwen2",
    "dtype": "fp32",
    "quantization": "none",
    "attn_implementation": "sdpa",
    "device": "auto",
    "max_input_tokens": 2048,
    "max_new_tokens": 128,
    "disable_eos": False,
    "options": {},
}
STREAM = StreamSettings().model_dump(mode="json")
SEALING = SealingSettings().model_dump(mode="json")


def _package(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "pkg" / "sub" / "mod.py").write_text("def f() -> int:\n    return 2\n")
    return root / "pkg"


def _model(root: Path) -> Path:
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    (model / "tokenizer.json").write_text('{"version": "1.0"}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    return model


def test_code_register_is_deterministic_and_ignores_bytecode_and_other_files(tmp_path: Path) -> None:
    package = _package(tmp_path)
    first = measure_code(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\x00")
    (package / "README.md").write_text("notes")
    assert measure_code(package) == first
    assert len(first) == 64 and int(first, 16) >= 0


@pytest.mark.parametrize(
    "change",
    ["edit_byte", "rename", "add_file", "move_between_files"],
)
def test_code_register_changes_with_any_source_change(tmp_path: Path, change: str) -> None:
    package = _package(tmp_path)
    before = measure_code(package)
    if change == "edit_byte":
        (package / "__init__.py").write_text("x = 2\n")
    elif change == "rename":
        (package / "sub" / "mod.py").rename(package / "sub" / "mod2.py")
    elif change == "add_file":
        (package / "sub" / "extra.py").write_text("")
    else:  # same concatenated bytes, split differently: the length prefixes tell them apart
        (package / "__init__.py").write_text("x = 1\ndef f() -> int:\n")
        (package / "sub" / "mod.py").write_text("    return 2\n")
    assert measure_code(package) != before


def test_code_register_is_independent_of_creation_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for name in ("z.py", "m.py", "a.py"):
        (a / name).write_text(name)
    for name in ("a.py", "m.py", "z.py"):
        (b / name).write_text(name)
    assert measure_code(a) == measure_code(b)


def test_real_package_measures() -> None:
    assert measure_code(default_package_dir()) == measure_code(default_package_dir())
    assert (default_package_dir() / "attestation" / "measurement.py").is_file()


def test_config_register_covers_behaviour_not_placement() -> None:
    base = runtime_config(ENGINE, debug=False, stream=STREAM, sealing=SEALING)
    assert set(base) == {*CONFIG_FIELDS, "debug", "stream", "sealing"}
    assert "device" not in base
    assert measure_config(base) == measure_config(dict(reversed(list(base.items()))))
    placed = runtime_config({**ENGINE, "device": "cuda:1"}, debug=False, stream=STREAM, sealing=SEALING)
    assert measure_config(placed) == measure_config(base)
    for name, value in [("dtype", "bf16"), ("max_new_tokens", 129), ("quantization", "int8"), ("options", {"a": 1})]:
        changed = runtime_config({**ENGINE, name: value}, debug=False, stream=STREAM, sealing=SEALING)
        assert measure_config(changed) != measure_config(base)
    assert measure_config(runtime_config(ENGINE, debug=True, stream=STREAM, sealing=SEALING)) != measure_config(base)


def test_config_register_covers_what_the_host_sees_of_an_answer() -> None:
    """A host that shrank frames or turned constant rate off would change the register a client pins."""
    base = measure_config(runtime_config(ENGINE, debug=False, stream=STREAM, sealing=SEALING))
    for name, value in [
        ("frame_bytes", 4096),
        ("flush_interval_ms", 10.0),
        ("constant_rate", not STREAM["constant_rate"]),
    ]:
        assert (
            measure_config(runtime_config(ENGINE, debug=False, stream={**STREAM, name: value}, sealing=SEALING)) != base
        )


def test_config_register_covers_how_requests_are_sealed() -> None:
    """A host that made its workers offer classical keys too, or accept envelopes for longer, would change the
    register a client pins."""
    base = measure_config(runtime_config(ENGINE, debug=False, stream=STREAM, sealing=SEALING))
    with_classical = {**SEALING, "suites": [*SEALING["suites"], "hpke-x25519-hkdf-sha256-aes256gcm"]}
    assert measure_config(runtime_config(ENGINE, debug=False, stream=STREAM, sealing=with_classical)) != base
    longer_lived = {**SEALING, "envelope_max_ttl_s": 86_400}
    assert measure_config(runtime_config(ENGINE, debug=False, stream=STREAM, sealing=longer_lived)) != base


def test_runtime_config_requires_every_measured_field() -> None:
    with pytest.raises(ValueError):
        runtime_config({k: v for k, v in ENGINE.items() if k != "dtype"}, debug=False, stream=STREAM, sealing=SEALING)


def test_model_register_covers_every_file_but_hidden_ones(tmp_path: Path) -> None:
    model = _model(tmp_path)
    first = measure_model(model)
    (model / ".cache").mkdir()
    (model / ".cache" / "download.lock").write_text("123")
    assert measure_model(model) == first
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert measure_model(model) != first


def test_model_register_streams_large_files(tmp_path: Path) -> None:
    model = _model(tmp_path)
    big = model / "model-00001.safetensors"
    big.write_bytes(os.urandom(_CHUNK_BYTES * 2 + 17))
    first = measure_model(model)
    with big.open("r+b") as handle:
        handle.seek(_CHUNK_BYTES + 3)
        byte = handle.read(1)
        handle.seek(_CHUNK_BYTES + 3)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert measure_model(model) != first


def test_model_register_refuses_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        measure_model(tmp_path)
    with pytest.raises(ValueError):
        measure_model(tmp_path / "missing")


def test_measure_worker_names_three_registers(tmp_path: Path) -> None:
    registers = measure_worker(
        _package(tmp_path), runtime_config(ENGINE, debug=False, stream=STREAM, sealing=SEALING), _model(tmp_path)
    )
    assert set(registers) == {"code", "config", "model"}
    assert len(set(registers.values())) == 3  # domain separation: equal inputs would still differ per register
