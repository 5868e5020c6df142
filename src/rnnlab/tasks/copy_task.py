"""The copy task (Hochreiter & Schmidhuber, 1997; Arjovsky et al., 2016).

Tokens: 0 is blank, 1..K are symbols, K+1 is the delimiter. The input shows
``n_symbols`` random symbols, then ``length - 1`` blanks, the delimiter, and
``n_symbols`` more blanks; the target is the symbols, in order, on the last
``n_symbols`` steps (the recall steps) and :data:`IGNORE` (-100) everywhere else::

    input : s1 .. sS  0 .. 0  D  0 .. 0
    target: -  .. -   - .. -  -  s1 .. sS        (- is -100: not scored)

so each symbol must be held for ``length + n_symbols`` steps.

Loss and metric cover the recall steps only. The trainer skips targets equal to
-100 in both the cross-entropy and the accuracy, so the accuracy is the fraction of
symbols recalled (chance ``1/K``) and the loss is the mean cross-entropy per recalled
symbol (a memoryless "uniform guess" scores ``ln K``,
:attr:`Copy.guess_cross_entropy`). This differs from the form of Arjovsky et al.
(2016), whose loss also covers the blank steps, where the answer "blank" is
trivial: there, per-step accuracy is about 0.92 for a model with no memory at all,
and the loss of "blank, then guess uniformly" is ``S ln K / (T + 2S)``
(:attr:`Copy.all_steps_guess_cross_entropy`), so both numbers mostly measure the
blanks. Scoring only the recall steps also means the model is never told to output
blank; its outputs on the other steps are unconstrained and meaningless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.errors import ensure
from rnnlab.tasks.base import IGNORE, SplitData, Task
from rnnlab.tasks.memoryless import scored_steps_lookup


class SymbolRecall:
    """What the copy tasks share: tokens 0 (blank or noise), the symbols ``1..K``
    (``alphabet``) and a delimiter ``K + 1``; classes ``0..K``, of which 0 is never a
    target (kept so a class is its symbol's token); chance, the best constant answer on
    uniform symbols, ``1/K``."""

    alphabet: int

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
        """Recall accuracy of the best constant answer: every symbol has probability 1/K."""
        return 1.0 / self.alphabet


@dataclass
class Copy(SymbolRecall, Task):
    """Per-step tagging: reproduce ``n_symbols`` symbols after a delay of ``length`` steps.

    Inputs ``(N, T + 2S)`` int64 tokens in ``[0, K + 1]``; targets
    ``(N, T + 2S)`` int64, the symbols ``1..K`` on the last ``S`` steps and -100
    (ignored) elsewhere; metric: accuracy on the recall steps (loss likewise, see
    the module docstring). Chance is ``1/K`` = 0.125 on the defaults. The
    memoryless baseline, a lookup from the current token to the most frequent
    target fitted and scored on the recall steps, sees a blank at every recall step,
    so it can only name one symbol and scores about ``1/K`` too; its cross-entropy
    is at best :attr:`guess_cross_entropy` = ``ln K`` = 2.079 nats.
    """

    name: ClassVar[str] = "copy"
    description: ClassVar[str] = "repeat a few symbols after a long run of blanks"
    head: ClassVar[str] = "tag"
    input: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    memory_axis: ClassVar[str | None] = "length"
    memory_axis_label: ClassVar[str] = "delay: blank steps between the symbols and the delimiter"
    memory_lengths: ClassVar[tuple[int, ...]] = (5, 10, 20, 40)
    # Four symbols, not the classic ten: at hidden size 32 and the protocol's 3,200 steps
    # the LSTM copied ten at 0.64-0.66 after 5 blanks and the GRU at most 0.67 (a first
    # full run, docs/memory-suite.md), so the suite would have measured little but failure.
    memory_options: ClassVar[dict[str, int]] = {"n_symbols": 4}

    length: int = 100
    n_symbols: int = 10
    alphabet: int = 8
    n_train: int = 10000
    n_dev: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        ensure(self.length >= 1,
              f"length (the delay in blank steps) must be at least 1, got {self.length}")
        ensure(self.n_symbols >= 1, f"n_symbols must be at least 1, got {self.n_symbols}")
        ensure(self.alphabet >= 2,
              f"alphabet must have at least 2 symbols so there is something to remember, "
              f"got {self.alphabet}")
        self.check_split_sizes()

    @property
    def total_length(self) -> int:
        return self.length + 2 * self.n_symbols

    @property
    def recall_steps(self) -> slice:
        """The steps that are scored: the last ``n_symbols``."""
        return slice(self.total_length - self.n_symbols, None)

    @property
    def guess_cross_entropy(self) -> float:
        """Cross-entropy (nats) per recall step of a uniform guess: ``ln K`` (the loss here)."""
        return math.log(self.alphabet)

    @property
    def all_steps_guess_cross_entropy(self) -> float:
        """Mean cross-entropy over all steps of "blank, then a uniform guess", the
        memoryless reference of the all-steps loss of Arjovsky et al. (2016)."""
        return self.n_symbols * math.log(self.alphabet) / self.total_length

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        symbols = torch.randint(1, self.alphabet + 1, (n, self.n_symbols), generator=generator)
        inputs = torch.zeros(n, self.total_length, dtype=torch.int64)
        targets = torch.full((n, self.total_length), IGNORE, dtype=torch.int64)
        inputs[:, :self.n_symbols] = symbols
        inputs[:, self.n_symbols + self.length - 1] = self.delimiter
        targets[:, self.recall_steps] = symbols
        return SplitData(inputs, targets)

    def recall_accuracy(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Accuracy on the ``n_symbols`` recall steps only (what the trainer reports)."""
        recall = self.recall_steps
        return float((logits[:, recall].argmax(-1) == targets[:, recall]).float().mean())

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        """Recall accuracy of the lookup "current token -> most frequent target",
        fitted on the train split's recall steps and scored on the test split's."""
        return scored_steps_lookup(splits)
