"""Per-request state inside the engine: token ids, sampling policy, KV slot, status and timings.

Torch-free at run time (the generator is only typed here), so the scheduler stays torch-free.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from securechat.engine.base import SamplingParams

if TYPE_CHECKING:
    import torch

_seq_ids = itertools.count()


class SequenceStatus(Enum):
    WAITING = auto()  # queued, no KV slot yet
    RUNNING = auto()  # holds a KV slot, takes part in steps
    FINISHED = auto()  # hit EOS or its token budget; slot freed
    ABORTED = auto()  # the consumer went away; slot freed


@dataclass(slots=True, eq=False)
class Sequence:
    prompt_ids: list[int]
    sampling: SamplingParams
    max_new_tokens: int  # sampling.max_new_tokens capped by the engine config
    seq_id: int = field(default_factory=lambda: next(_seq_ids))
    output_ids: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    slot: int | None = None  # KV cache row while RUNNING
    generator: torch.Generator | None = None  # seeded sampling; made by the runner on its device
    first_token_at: float | None = None  # time.perf_counter() when the first output token was sampled
    grammar: str | None = field(default=None, repr=False)  # constrained decoding: a structural tag (tenant data)
    matcher: Any = field(default=None, repr=False)  # the grammar's xgrammar.GrammarMatcher, made by the core
    # Choices of one prompt (n > 1): the first is the leader, the others name it in ``prefill_from`` and are
    # admitted with it, so the prompt is prefilled once and its KV copied to their slots.
    prefill_from: int | None = None
    group_size: int = 1  # on the leader: how many sequences its group holds, itself included

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens: the context length once the last token's KV is written."""
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]

    @property
    def is_done(self) -> bool:
        return self.status in (SequenceStatus.FINISHED, SequenceStatus.ABORTED)

    @property
    def is_greedy(self) -> bool:
        return self.sampling.temperature == 0

    @property
    def top_logprobs(self) -> int | None:
        """How many alternatives each token's log probability comes with; None when none is asked for."""
        return self.sampling.top_logprobs if self.sampling.logprobs else None
