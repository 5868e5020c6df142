"""Selective copying (as in MAD, Poli et al., 2024): copy the few symbols hidden in noise.

Tokens: 0 is the noise (blank) token, 1..K are symbols, K+1 is the delimiter. The
first ``length`` steps are noise except at ``n_symbols`` positions drawn at random
(distinct, different in every sequence), which hold random symbols; then comes the
delimiter and ``n_symbols`` blank recall steps. The target is the symbols in the order
they appeared, on the recall steps, and -100 (not scored) everywhere else::

    input : 0 s1 0 0 s2 0 .. 0 s3 0  D  0  0  0
    target: - -  - - -  - .. - -  -  -  s1 s2 s3     (- is -100: not scored)

Unlike :mod:`~rnnlab.tasks.copy_task`, the symbols do not sit at fixed steps, so a
model must *select* what to store (which steps carry content) as well as hold it: a
fixed delay line cannot solve it. The memory axis is ``length``, the stretch the
symbols are scattered over; the first symbol waits up to ``length + n_symbols`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.errors import ensure
from rnnlab.tasks.base import IGNORE, SplitData, Task
from rnnlab.tasks.copy_task import SymbolRecall
from rnnlab.tasks.memoryless import scored_steps_lookup


@dataclass
class SelectiveCopy(SymbolRecall, Task):
    """Per-step tagging: after the delimiter, name the scattered symbols in order.

    Inputs ``(N, length + 1 + S)`` int64 tokens in ``[0, K + 1]``; targets of the
    same shape, the symbols ``1..K`` on the last ``S`` steps and -100 elsewhere;
    metric and score: accuracy on the recall steps. Symbols are uniform over the K,
    so chance (the best constant answer) is ``1/K``; the memoryless baseline, a lookup
    from the current token to the most frequent target on the recall steps, sees
    only blanks there and lands at chance too.
    """

    name: ClassVar[str] = "selective-copy"
    description: ClassVar[str] = "copy the few symbols scattered among noise, in order (MAD)"
    head: ClassVar[str] = "tag"
    input: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    memory_axis: ClassVar[str | None] = "length"
    memory_axis_label: ClassVar[str] = "sequence length: noise steps the symbols are scattered over"
    memory_lengths: ClassVar[tuple[int, ...]] = (8, 16, 32, 64)

    length: int = 32
    n_symbols: int = 4
    alphabet: int = 8
    n_train: int = 10000
    n_dev: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        ensure(self.n_symbols >= 1, f"n_symbols must be at least 1, got {self.n_symbols}")
        ensure(self.length >= self.n_symbols,
              f"length ({self.length}) must be at least n_symbols ({self.n_symbols}): the "
              "symbols are placed at distinct steps of the first length steps")
        ensure(self.alphabet >= 2,
              f"alphabet must have at least 2 symbols so there is something to remember, "
              f"got {self.alphabet}")
        self.check_split_sizes()

    @property
    def total_length(self) -> int:
        return self.length + 1 + self.n_symbols

    @property
    def recall_steps(self) -> slice:
        return slice(self.length + 1, None)

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        symbols = torch.randint(1, self.alphabet + 1, (n, self.n_symbols), generator=generator)
        # n_symbols distinct steps per sequence, sorted so the order of appearance is
        # the order of the symbols.
        scores = torch.rand(n, self.length, generator=generator)
        positions = scores.argsort(dim=1)[:, :self.n_symbols].sort(dim=1).values
        inputs = torch.zeros(n, self.total_length, dtype=torch.int64)
        inputs.scatter_(1, positions, symbols)
        inputs[:, self.length] = self.delimiter
        targets = torch.full((n, self.total_length), IGNORE, dtype=torch.int64)
        targets[:, self.recall_steps] = symbols
        return SplitData(inputs, targets)

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        """Recall accuracy of "current token -> most frequent target", fitted on the
        train split's recall steps and scored on the test split's."""
        return scored_steps_lookup(splits)
