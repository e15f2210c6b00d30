"""A Qwen2.5-1.5B-shaped model with random weights, written from a config embedded here (no download).

Decode speed does not depend on weight values, so this stands in for ``Qwen/Qwen2.5-1.5B-Instruct`` on a
machine without internet. Qwen's own tokenizer cannot be fetched offline and the tiny model's (768 tokens) does
not cover a 151,936-token vocabulary, so this writes a *synthetic byte-level BPE* whose vocabulary is exactly
the model's: the 256 byte symbols, every 2-byte pair, then 3-byte tokens up to id 151,642, Qwen's three ChatML
specials at their real ids (151,643-151,645) and more 3-byte tokens up to 151,935. Every id the model can emit
decodes; any text encodes; ``transformers`` loads it as ``Qwen2Tokenizer`` exactly as it loads Qwen's. Prompts
are sized by counting tokens with it (``prompts.py``), so input_tokens are exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from benchmarks.experiments.common import SEED

# Qwen/Qwen2.5-1.5B-Instruct's config.json, the fields that shape the model.
QWEN25_1P5B_CONFIG: Final[dict[str, Any]] = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}
SPECIAL_IDS: Final = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
_COMPLETE_MARKER: Final = ".complete"  # written last: a dir without it is half-written


def _byte_bpe_tokenizer(vocab_size: int) -> Any:
    from itertools import product

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from securechat.tiny_model import CHAT_TEMPLATE

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []
    next_id = 0
    special_by_id = {token_id: token for token, token_id in SPECIAL_IDS.items()}

    def add(token: str, merge: tuple[str, str] | None) -> None:
        nonlocal next_id
        while next_id in special_by_id:
            vocab[special_by_id[next_id]] = next_id
            next_id += 1
        vocab[token] = next_id
        next_id += 1
        if merge is not None:
            merges.append(merge)

    for char in alphabet:
        add(char, None)
    for a, b in product(alphabet, repeat=2):
        add(a + b, (a, b))
    for (a, b), c in product(product(alphabet, repeat=2), alphabet):
        if next_id >= vocab_size:
            break
        add(a + b + c, (a + b, c))
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=int(QWEN25_1P5B_CONFIG["max_position_embeddings"]),
        clean_up_tokenization_spaces=False,
    )


def write_random_model(out_dir: Path, *, overrides: dict[str, Any] | None = None, device: str = "cpu") -> Path:
    """Write config, bf16 random weights (fixed seed) and the id tokenizer into ``out_dir``; reuse a complete one.

    ``overrides`` changes config fields (tests use a 2-layer model); ``device`` is where weights are initialised.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    if (out_dir / _COMPLETE_MARKER).is_file():
        return out_dir
    fields = {**QWEN25_1P5B_CONFIG, **(overrides or {})}
    config = Qwen2Config(**{k: v for k, v in fields.items() if k not in ("architectures", "model_type")})
    config.architectures = ["Qwen2ForCausalLM"]
    torch.manual_seed(SEED)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
        model.to(dtype=torch.bfloat16)  # type: ignore[call-arg]
    model.generation_config = GenerationConfig(
        bos_token_id=SPECIAL_IDS["<|endoftext|>"],
        eos_token_id=[SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"]],
        pad_token_id=SPECIAL_IDS["<|endoftext|>"],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _byte_bpe_tokenizer(int(fields["vocab_size"])).save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    (out_dir / _COMPLETE_MARKER).write_text("written by benchmarks.experiments.random_model\n")
    return out_dir
