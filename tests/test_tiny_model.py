from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from securechat import tiny_model
from securechat.cli import main
from securechat.tiny_model import (
    TINY_MODEL_NAME,
    build_tiny_model,
    default_cache_dir,
    ensure_tiny_model,
    resolve_model_path,
    tiny_model_dir,
)


def _digests(model_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(model_dir.iterdir())}


def test_build_is_byte_identical_across_processes(tiny_model_path: Path, tmp_path: Path) -> None:
    # A second build in a fresh interpreter with another hash seed: catches per-process randomness too.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-m", "securechat.cli", "build-tiny-model", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    other_dir = Path(result.stdout.strip())
    assert other_dir == tiny_model_dir(tmp_path)
    assert _digests(other_dir) == _digests(tiny_model_path)


def test_layout_and_size(tiny_model_path: Path) -> None:
    names = {p.name for p in tiny_model_path.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert sum(p.stat().st_size for p in tiny_model_path.iterdir()) < 5 * 1024 * 1024
    assert not [p for p in tiny_model_path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_loads_like_a_hub_checkpoint(tiny_model_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.tie_word_embeddings
    assert model.config.vocab_size == len(tokenizer)
    assert 512 <= len(tokenizer) <= 1024
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") != tokenizer.unk_token_id


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "naïve café — déjà vu ½ ∑ ∞",
        "emoji 👋🏽🧪🚀 and flags 🇫🇷 and ZWJ 👩‍💻",
        "中文 日本語 한국어 العربية עברית",
        "tabs\tand\nnewlines\r\n  spaces   ",
        "\x00\x07 control bytes \u200b zero-width",
    ],
)
def test_tokenizer_round_trips_any_text(tiny_model_path: Path, text: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_chat_template_renders_chatml(tiny_model_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with_system = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
        ],
        tokenize=False,
    )
    assert with_system == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
    )


def test_seeded_sampling_gives_varied_text(tiny_model_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    torch.manual_seed(0)
    out = model.generate(
        **tokenizer("Hello", return_tensors="pt"),
        do_sample=True,
        top_k=0,
        max_new_tokens=40,
        min_new_tokens=40,
    )
    assert len(set(out[0].tolist())) > 20


def test_ensure_builds_once_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = ensure_tiny_model(tmp_path)
    assert model_dir == tiny_model_dir(tmp_path)

    def fail(target_dir: Path, *, force: bool = False) -> Path:
        raise AssertionError("rebuilt an existing model")

    monkeypatch.setattr(tiny_model, "build_tiny_model", fail)
    assert ensure_tiny_model(tmp_path) == model_dir


def test_concurrent_builds_race_safely(tmp_path: Path) -> None:
    target = tmp_path / "models" / "racy"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(build_tiny_model(target))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [target, target]
    assert [p.name for p in target.parent.iterdir()] == ["racy"]
    assert (target / "model.safetensors").is_file()


def test_cache_dir_and_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURECHAT_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert resolve_model_path("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve_model_path("/models/local-dir") == "/models/local-dir"
    assert resolve_model_path(TINY_MODEL_NAME) == str(tmp_path / "models" / "tiny-qwen2-v2")
    monkeypatch.delenv("SECURECHAT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "securechat"


def test_cli_builds_and_prints_dir(tiny_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-tiny-model", "--cache-dir", str(tmp_path)]) == 0
    model_dir = Path(capsys.readouterr().out.strip())
    assert model_dir == tiny_model_dir(tmp_path)
    first_inode = (model_dir / "model.safetensors").stat().st_ino

    assert main(["build-tiny-model", "--cache-dir", str(tmp_path), "--force"]) == 0
    assert Path(capsys.readouterr().out.strip()) == model_dir
    assert (model_dir / "model.safetensors").stat().st_ino != first_inode  # really rebuilt
    assert _digests(model_dir) == _digests(tiny_model_path)
