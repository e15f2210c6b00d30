"""Measure a worker into named registers, like Nitro PCRs or TDX RTMRs: each is a hex SHA-256.

- ``code``: every ``.py`` file of the ``securechat`` package (what the worker executes).
- ``config``: the runtime settings that change what the worker computes or reveals (engine, model, precision,
  limits, debug, how answers leave it: flush cadence, frame size, constant rate, token buckets; how requests
  are sealed to it: suites, envelope lifetime, replay memory), as canonical JSON; placement settings such as
  ``device`` are left out on purpose.
- ``model``: every non-hidden file of the model directory (config, tokenizer, weights, chat templates, any
  custom code). Measuring all files, not a list of known names, fails closed: a file the loader reads cannot
  slip past the measurement. Hidden entries (``.cache/`` download metadata, ``.git``) are skipped because they
  change without changing the model.
- ``embedder`` (only when collections are enabled): every file of the sentence-embedding model's directory,
  measured the same way; the ``config`` register then also covers the collection settings that change what
  a worker computes (chunk sizes, document size limit).

Each file enters the hash as (length-prefixed relative path, length-prefixed contents), in sorted path order,
so the encoding is unambiguous and independent of directory listing order. Large files are streamed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from securechat.attestation._canonical import canonical_json

CODE: Final = "code"
CONFIG: Final = "config"
MODEL: Final = "model"
EMBEDDER: Final = "embedder"
REGISTER_NAMES: Final = (CODE, CONFIG, MODEL)
REGISTER_HEX: Final = 64  # hex SHA-256
MAX_REGISTERS: Final = 16

# EngineSettings fields that change behaviour; debug is added by the caller.
CONFIG_FIELDS: Final = (
    "kind",
    "model",
    "dtype",
    "quantization",
    "attn_implementation",
    "max_input_tokens",
    "max_new_tokens",
    "disable_eos",
    "options",
)
# RagSettings fields that change what a worker computes (store location and cache sizes do not).
RAG_CONFIG_FIELDS: Final = (
    "enabled",
    "max_document_bytes",
    "chunk_tokens",
    "overlap_tokens",
    "retrieval",
    "parse_time_s",
    "parse_memory_mb",
)

_CHUNK_BYTES = 1 << 20
_DOMAIN = b"securechat-measurement-v1\x00"


def default_package_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def measure_code(package_dir: Path) -> str:
    files = [path for path in _walk(package_dir, skip_hidden=False) if path.suffix == ".py"]
    return _hash_files(CODE, package_dir, files)


def runtime_config(
    engine: Mapping[str, Any], *, debug: bool, stream: Mapping[str, Any], sealing: Mapping[str, Any]
) -> dict[str, Any]:
    """What the config register covers: part of the engine settings (``EngineSettings.model_dump()``), debug,
    the stream settings (``StreamSettings.model_dump()``), which decide what the host sees of an answer, and
    the sealing settings (``SealingSettings.model_dump()``: the suites the worker makes keys for, how long an
    envelope may live and how many it remembers), which decide how requests reach it."""
    missing = [name for name in CONFIG_FIELDS if name not in engine]
    if missing:
        raise ValueError("engine settings lack a measured field")
    measured = {name: engine[name] for name in CONFIG_FIELDS}
    return {**measured, "debug": debug, "stream": dict(stream), "sealing": dict(sealing)}


def measure_config(config: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(_DOMAIN + CONFIG.encode() + b"\x00")
    digest.update(canonical_json(dict(config)))
    return digest.hexdigest()


def measure_model(model_dir: Path, register: str = MODEL) -> str:
    files = list(_walk(model_dir, skip_hidden=True))
    if not files:
        raise ValueError("model directory has no files")
    return _hash_files(register, model_dir, files)


def model_dir_for(model_id: str) -> Path:
    """The local directory a model id loads from: a directory as given, the embedded tiny model, or the
    Hugging Face cache snapshot of a hub id (already downloaded by the engine; nothing is fetched here)."""
    from securechat.tiny_model import resolve_model_path

    resolved = Path(resolve_model_path(model_id)).expanduser()
    if resolved.is_dir():
        return resolved
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_id, local_files_only=True))


def measure_worker(package_dir: Path, config: Mapping[str, Any], model_dir: Path) -> dict[str, str]:
    return {
        CODE: measure_code(package_dir),
        CONFIG: measure_config(config),
        MODEL: measure_model(model_dir),
    }


def _walk(root: Path, *, skip_hidden: bool) -> Iterable[Path]:
    if not root.is_dir():
        raise ValueError("not a directory")
    # followlinks=False: a symlinked directory could point anywhere and loop; symlinked files are read
    # through, since that is what an import or a loader would read.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [name for name in dirnames if name != "__pycache__" and not (skip_hidden and name[0] == ".")]
        for name in filenames:
            if not (skip_hidden and name[0] == "."):
                yield Path(dirpath, name)


def _hash_files(register: str, root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(_DOMAIN + register.encode() + b"\x00")
    entries = sorted((path.relative_to(root).as_posix(), path) for path in files)
    for relative, path in entries:
        name = relative.encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest.update(size.to_bytes(8, "big"))
            num_read = 0
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
                num_read += len(chunk)
        if num_read != size:  # the file changed while we read it: the measurement would mean nothing
            raise ValueError("file changed during measurement")
    return digest.hexdigest()


def measure_for_engine(
    engine: Mapping[str, Any],
    *,
    debug: bool,
    stream: Mapping[str, Any],
    sealing: Mapping[str, Any],
    rag: Mapping[str, Any] | None = None,
    embedder_dir: Path | None = None,
) -> dict[str, str]:
    """The registers a worker running ``engine`` (an EngineSettings dump, JSON mode) measures; the manifest
    builder calls this too, so what a release allows is by construction what its workers report. With ``rag``
    (a RagSettings dump, enabled) the embedder in ``embedder_dir`` is measured too."""
    config = runtime_config(engine, debug=debug, stream=stream, sealing=sealing)
    if rag is None or not rag.get("enabled"):
        return measure_worker(default_package_dir(), config, model_dir_for(str(engine["model"])))
    if embedder_dir is None:
        raise ValueError("collections are enabled: the embedder's directory must be measured too")
    config["rag"] = {name: rag[name] for name in RAG_CONFIG_FIELDS}
    registers = measure_worker(default_package_dir(), config, model_dir_for(str(engine["model"])))
    registers[EMBEDDER] = measure_model(embedder_dir, EMBEDDER)
    return registers
