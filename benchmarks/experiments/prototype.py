"""The prototype's published numbers (its README, "Performance Experiments & Results"), for SUMMARY.md.

Measured on one NVIDIA GPU with Qwen/Qwen2.5-1.5B-Instruct, HF generate + TextIteratorStreamer, gRPC hops.
"""

from __future__ import annotations

from typing import Final

# Each entry: one line of the prototype's reading, with the numbers it rests on.
PROTOTYPE: Final[dict[str, str]] = {
    "quantization": "FP16 43.5 tok/s vs INT8 14.0 tok/s at 256 max tokens (~3.1x); TTFT similar (400-490 ms).",
    "prompt_length": "21 / 159 / 408 input tokens: 63.1 / 27.5 / 22.3 tok/s; TTFT flat at 67-80 ms.",
    "attention": "Long prompt: FlashAttention2 21.9 tok/s vs SDPA 25.2 tok/s; no win for FA2.",
    "overhead": "Worker 15,327 ms vs gateway 15,372 ms (~45 ms, <1%); SDPA 14,492 vs 14,531 (~39 ms).",
    "concurrency": "Worker ~11.4 s per request at 1/2/4 clients; gateway e2e 11.5 / 22.8 / 45.7 s (linear).",
    "multi_worker": "4 requests: 2 workers 30.7 s vs 1 worker 45.7 s (~1.5x, different prompts).",
}
