"""The batched engine on one CUDA GPU: greedy tokens against transformers, then speed (``make bench-gpu-engine``).

Run ``python -m benchmarks.gpu_engine [--smoke] [--out-dir DIR]``; ``__main__.py`` says what it measures.

GPU hosts carry torch, transformers and triton but not ``cryptography``, ``ray`` or ``fastapi``.
``securechat/__init__.py`` re-exports the envelope and stream API (``cryptography``), while the engine needs
none of it, so importing this package registers ``securechat`` by path without running that file; the engine's
own modules then import as usual. Nothing here imports ray, fastapi or cryptography.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path


def _register_securechat_by_path() -> None:
    if "securechat" in sys.modules:
        return
    package = types.ModuleType("securechat")
    package.__dict__["__path__"] = [str(Path(__file__).resolve().parents[2] / "securechat")]
    sys.modules["securechat"] = package


_register_securechat_by_path()
