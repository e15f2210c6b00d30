"""Benchmarks that reproduce the prototype's six performance experiments, for both engines.

Run ``python -m benchmarks.experiments <name|all> [--profile cpu|gpu] ...``; see benchmarks/README.md.
Worker-side experiments (``quantization``, ``prompt_length``, ``attention``) drive the engines in-process;
end-to-end ones (``overhead``, ``concurrency``, ``multi_worker``) drive the real Serve app over HTTP.
"""

from __future__ import annotations

from typing import Final

ENGINE_EXPERIMENTS: Final = ("quantization", "prompt_length", "attention")
HTTP_EXPERIMENTS: Final = ("overhead", "concurrency", "multi_worker")
EXPERIMENTS: Final = ENGINE_EXPERIMENTS + HTTP_EXPERIMENTS
