"""The copy task (Hochreiter & Schmidhuber, 1997; Arjovsky et al., 2016).

Tokens: 0 is blank, 1..K are symbols, K+1 is the delimiter. The input shows
``n_symbols`` random symbols, then ``length - 1`` blanks, the delimiter, and
``n_symbols`` more blanks; the target is blank everywhere except the last
``n_symbols`` steps, where it repeats the symbols in order::

    input : s1 .. sS  0 .. 0  D  0 .. 0
    target: 0  .. 0   0 .. 0  0  s1 .. sS

so each symbol must be held for ``length + n_symbols`` steps. The usual
reference point is the memoryless strategy "blank, then guess uniformly": its
cross-entropy is ``S ln K / (T + 2S)`` (:attr:`Copy.guess_cross_entropy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.errors import check
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import lookup_accuracy


@dataclass
class Copy(Task):
    """Per-step tagging: reproduce ``n_symbols`` symbols after a delay of ``length`` steps.

    Inputs ``(N, T + 2S)`` int64 tokens in ``[0, K + 1]``; targets
    ``(N, T + 2S)`` int64 in ``[0, K]``; metric: per-step accuracy over all
    steps. The memoryless baseline (a lookup from the current token to the most
    frequent target) answers blank everywhere and scores ``(T + S) / (T + 2S)``
    = 0.917 on the default parameters; the symbols themselves it gets right
    with probability 0 (a uniform guess would get ``1/K``). The memoryless
    cross-entropy is :attr:`guess_cross_entropy` = 0.173 on the defaults.
    """

    name: ClassVar[str] = "copy"
    description: ClassVar[str] = "repeat a few symbols after a long run of blanks"
    head: ClassVar[str] = "tag"
    input: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"

    length: int = 100
    n_symbols: int = 10
    alphabet: int = 8
    n_train: int = 10000
    n_dev: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        check(self.length >= 1,
              f"length (the delay in blank steps) must be at least 1, got {self.length}")
        check(self.n_symbols >= 1, f"n_symbols must be at least 1, got {self.n_symbols}")
        check(self.alphabet >= 2,
              f"alphabet must have at least 2 symbols so there is something to remember, "
              f"got {self.alphabet}")
        for split in ("n_train", "n_dev", "n_test"):
            size = getattr(self, split)
            check(size >= 1, f"{split} must be at least 1, got {size}")

    @property
    def total_length(self) -> int:
        return self.length + 2 * self.n_symbols

    @property
    def delimiter(self) -> int:
        return self.alphabet + 1

    @property
    def vocab_size(self) -> int:
        return self.alphabet + 2

    @property
    def num_outputs(self) -> int:
        return self.alphabet + 1

    @property
    def chance(self) -> float:
        """Accuracy of answering blank at every step."""
        return (self.length + self.n_symbols) / self.total_length

    @property
    def guess_cross_entropy(self) -> float:
        """Mean per-step cross-entropy (nats) of "blank, then a uniform guess"."""
        return self.n_symbols * math.log(self.alphabet) / self.total_length

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        symbols = torch.randint(1, self.alphabet + 1, (n, self.n_symbols), generator=generator)
        inputs = torch.zeros(n, self.total_length, dtype=torch.int64)
        targets = torch.zeros(n, self.total_length, dtype=torch.int64)
        inputs[:, :self.n_symbols] = symbols
        inputs[:, self.n_symbols + self.length - 1] = self.delimiter
        targets[:, -self.n_symbols:] = symbols
        return SplitData(inputs, targets)

    def recall_accuracy(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Accuracy on the ``n_symbols`` recall steps only, where memory is needed."""
        recall = slice(-self.n_symbols, None)
        return float((logits[:, recall].argmax(-1) == targets[:, recall]).float().mean())

    def splits(self, seed: int = 0) -> dict[str, SplitData]:
        sizes = {"train": self.n_train, "dev": self.n_dev, "test": self.n_test}
        return {name: self.generate(n, torch.Generator().manual_seed(3 * seed + k))
                for k, (name, n) in enumerate(sizes.items())}

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        train, test = splits["train"], splits["test"]
        return lookup_accuracy(train.inputs, train.targets, test.inputs, test.targets)
