"""The embedded default model: a tiny random Qwen2-architecture LM that the project builds itself.

It is built offline and deterministically (same bytes on every build) and saved in the layout of a Hub
checkpoint, so ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` load it exactly as they load
``Qwen/Qwen2.5-1.5B-Instruct``. Its weights are random: greedy output is degenerate, sampled output varied.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "TINY_MODEL_NAME",
    "build_tiny_model",
    "default_cache_dir",
    "ensure_tiny_model",
    "resolve_model_path",
    "tiny_model_dir",
]

TINY_MODEL_NAME: Final = "securechat/tiny-qwen2"
# Bump the suffix whenever the built bytes change, so old caches are never mistaken for the new model.
_MODEL_DIR_NAME: Final = "tiny-qwen2-v2"
_CACHE_ENV: Final = "SECURECHAT_CACHE_DIR"
_SEED: Final = 1234
_VOCAB_SIZE: Final = 768
_REQUIRED_FILES: Final = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)

ENDOFTEXT: Final = "<|endoftext|>"
IM_START: Final = "<|im_start|>"
IM_END: Final = "<|im_end|>"
# Same order as Qwen2.5 (151643, 151644, 151645), here as ids 0, 1, 2.
_SPECIAL_TOKENS: Final = (ENDOFTEXT, IM_START, IM_END)

# Qwen2.5's ChatML format, tools included: the tools listed in the system turn, an assistant's calls as
# <tool_call> blocks of {"name", "arguments"}, tool results as <tool_response> blocks in a user turn.
CHAT_TEMPLATE: Final = """\
{%- set has_system = messages and messages[0]['role'] == 'system' %}
{{- '<|im_start|>system\\n' }}
{{- messages[0]['content'] if has_system else 'You are a helpful assistant.' }}
{%- if tools %}
    {{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
    {%- for tool in tools %}
        {{- '\\n' + (tool | tojson) }}
    {%- endfor %}
    {{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments ' }}
    {{- 'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n' }}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>' }}
{%- endif %}
{{- '<|im_end|>\\n' }}
{%- for message in messages %}
    {%- if loop.first and has_system %}
    {%- elif message['role'] == 'assistant' and message.get('tool_calls') %}
        {{- '<|im_start|>assistant' }}
        {%- if message['content'] %}
            {{- '\\n' + message['content'] }}
        {%- endif %}
        {%- for call in message['tool_calls'] %}
            {%- set call = call['function'] if call.get('function') else call %}
            {{- '\\n<tool_call>\\n{"name": "' + call['name'] + '", "arguments": ' }}
            {{- (call['arguments'] | tojson) + '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message['role'] == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Training text for the BPE merges: varied English (prose, dialogue, numbers, code, punctuation) so common
# words get their own tokens; anything else still encodes through the 256-byte base alphabet.
_CORPUS: Final = """\
The morning fog rolled over the harbour while the fishing boats came home one by one.
Gulls followed them, crying over the nets, and the smell of salt and diesel hung in the air.
"Did you sleep at all?" she asked. "Not much," he said, "the wind kept rattling the shutters."
A good recipe for bread needs only flour, water, salt and yeast, plus time and a warm kitchen.
Mix 500 grams of flour with 350 millilitres of water, rest it for thirty minutes, then knead it well.
The train to the city leaves at 7:45 from platform 3; the next one is at 8:15, and it is usually late.
Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the leaves of plants.
The speed of light is about 299,792 kilometres per second, and sound travels roughly 343 metres per second.
Please remember to lock the door, water the tomatoes, and feed the cat before you leave for the weekend.
In 1969 two astronauts walked on the Moon while a third circled above them in the command module.
Questions are welcome: what is the capital of France? Paris. What is two plus two? Four, of course.
The committee will meet on Thursday to review the budget, the hiring plan, and the new security policy.
Every request is encrypted before it leaves the client, and only the worker that runs the model can read it.
def add(a: int, b: int) -> int:
    return a + b

for i in range(10):
    print(i * i)

if (x > 0 && y < 100) { count += 1; } else { count = 0; }
She opened the old book, blew the dust from its pages, and began to read the first chapter aloud.
Rivers carry sand and stones down from the mountains and slowly build wide, flat valleys near the sea.
The children laughed as the kite climbed higher and higher, a red dot against the pale blue sky.
Thank you for your message. I will look into the problem and get back to you as soon as possible.
Hello! How can I help you today? I can answer questions, write short stories, or explain an idea.
To install the package, run the installer, accept the licence, and restart the computer when asked.
The market opened at nine; apples were cheap, cherries were expensive, and the cheese stall sold out by noon.
Temperatures will rise to 24 degrees in the afternoon, with a light breeze from the west and clear skies.
He counted the coins twice: twelve pounds and forty pence, just enough for the ticket and a cup of tea.
Machine learning models learn patterns from data; larger models often need more memory and more compute.
A small, quiet library stood at the end of the street, open every day except Sunday and public holidays.
"Where are we going?" asked the boy. "Somewhere new," his grandmother replied, and smiled at the map.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 3.14159 2.71828 -7 +15 50% $19.99 #1 @home
Punctuation matters; commas, periods, colons: and semicolons; quotes "like this" and 'like that'.
Brackets come in kinds: (parentheses), [square brackets], {curly braces} and <angle brackets>.
The bridge was built of stone and iron, and it has carried carts, cars and bicycles for over a hundred years.
After the storm, the village gathered to clear the fallen trees and repair the roof of the old school.
Good writing is clear, honest and short. Say what you mean, then stop, and let the reader think.
The doctor listened to his heart, checked his blood pressure, and told him to walk more and worry less.
Winter came early that year: snow on the hills in October, ice on the lake by the middle of November.
Our team ships small changes often, tests every change, and writes down why a decision was made.
"""


def default_cache_dir() -> Path:
    """``$SECURECHAT_CACHE_DIR`` if set, else ``~/.cache/securechat``."""
    configured = os.environ.get(_CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "securechat"


def tiny_model_dir(cache_dir: Path | None = None) -> Path:
    """Where the tiny model lives under ``cache_dir`` (default: ``default_cache_dir()``); not built here."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "models" / _MODEL_DIR_NAME


def _is_complete(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in _REQUIRED_FILES)


def _train_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE over the embedded corpus, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(_SPECIAL_TOKENS),
        # The full byte alphabet is what lets any unicode text (emoji included) encode.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )


def _write_model(out_dir: Path, vocab_size: int, pad_id: int, eos_id: int) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    # Re-initialise every tensor from a private generator in name order, so the bytes depend on nothing but
    # the seed (not on the global RNG nor on how this transformers version initialises weights).
    generator = torch.Generator().manual_seed(_SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name.endswith(".bias"):
                param.zero_()
            else:
                param.normal_(mean=0.0, std=0.02, generator=generator)
    model.generation_config = GenerationConfig(bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    with _quiet_progress_bars():
        model.save_pretrained(out_dir)


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No "Writing model shards" bar on stderr for a model this small."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _write_into(out_dir: Path) -> None:
    tokenizer = _train_tokenizer()
    tokenizer.save_pretrained(out_dir)
    pad_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    assert isinstance(pad_id, int) and isinstance(eos_id, int)  # one token in, one id out
    _write_model(out_dir, vocab_size=len(tokenizer), pad_id=pad_id, eos_id=eos_id)


def build_tiny_model(target_dir: Path, *, force: bool = False) -> Path:
    """Build the model into ``target_dir`` atomically and return it.

    The files are written to a temp dir beside ``target_dir`` and renamed into place, so readers never see a
    half-built model; if another process wins the race, its (identical) build is kept. With ``force`` an
    existing model is replaced.
    """
    target_dir = Path(target_dir)
    if _is_complete(target_dir) and not force:
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.tmp-", dir=target_dir.parent))
    try:
        _write_into(tmp_dir)
        tmp_dir.chmod(0o755)  # mkdtemp makes it 0o700
        if target_dir.exists() and (force or not _is_complete(target_dir)):
            # Move the old dir aside first: rename cannot replace a non-empty directory.
            stale_dir = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.old-", dir=target_dir.parent))
            with contextlib.suppress(FileNotFoundError):
                target_dir.rename(stale_dir / target_dir.name)
            shutil.rmtree(stale_dir, ignore_errors=True)
        try:
            tmp_dir.rename(target_dir)
        except OSError:
            if not _is_complete(target_dir):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target_dir


def ensure_tiny_model(cache_dir: Path | None = None) -> Path:
    """The local dir of the tiny model, built on first use."""
    model_dir = tiny_model_dir(cache_dir)
    return model_dir if _is_complete(model_dir) else build_tiny_model(model_dir)


def resolve_model_path(model_id: str) -> str:
    """``TINY_MODEL_NAME`` -> its local dir (built if needed); any other id (hub id or path) unchanged."""
    return str(ensure_tiny_model()) if model_id == TINY_MODEL_NAME else model_id
