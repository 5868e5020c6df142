"""The adding problem (Hochreiter & Schmidhuber, 1997): sum the two marked values.

Each step carries two features: a value drawn uniformly from [0, 1] and a
marker. Exactly two steps are marked, one in the first half of the sequence and
one in the second (the form used by Le et al., 2015, and Arjovsky et al., 2016);
the target, read once at the end, is the sum of the two marked values. The first
marked value must be held for up to ``length`` steps while everything else is
noise, which is why the task measures memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import linear_mse


@dataclass
class Adding(Task):
    """Sequence-level regression of the sum of two marked values.

    Inputs ``(N, L, 2)`` float32 (value, marker); targets ``(N, 1)`` float32 in
    [0, 2]; metric: MSE. The model's output is read from its last state (head
    ``"regress-last"``: a linear map of the last valid state to one real value).
    Predicting 1.0 always scores 1/6 = 0.167 (chance); the memoryless baseline, a
    linear fit on the last step's value and marker, is no better: 0.167 on 20,000
    test sequences of length 100 (0.160 on the default 1,000 of seed 0), since the
    last step is rarely marked.
    """

    name: ClassVar[str] = "adding"
    description: ClassVar[str] = "sum the two marked values of a long noisy sequence"
    head: ClassVar[str] = "regress-last"  # one real output read from the last state
    input: ClassVar[str] = "features"
    metric: ClassVar[str] = "mse"
    memory_axis: ClassVar[str | None] = "length"
    memory_axis_label: ClassVar[str] = ("sequence length: the first marked value is in "
                                        "its first half")
    memory_lengths: ClassVar[tuple[int, ...]] = (10, 20, 40, 80)

    length: int = 100
    n_train: int = 10000
    n_dev: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        ensure(self.length >= 2,
              f"length must be at least 2 so both halves hold a marked value, got {self.length}")
        self.check_split_sizes()

    @property
    def input_size(self) -> int:
        return 2

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def chance(self) -> float:
        """MSE of always predicting the mean sum 1.0: the variance of two U(0, 1) draws."""
        return 1.0 / 6.0

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        half = self.length // 2
        values = torch.rand(n, self.length, generator=generator)
        first = torch.randint(half, (n,), generator=generator)
        second = half + torch.randint(self.length - half, (n,), generator=generator)
        markers = torch.zeros(n, self.length)
        rows = torch.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = (values[rows, first] + values[rows, second]).unsqueeze(1)
        return SplitData(torch.stack([values, markers], dim=-1), targets)

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        def last_step(split: SplitData) -> torch.Tensor:
            value, marker = split.inputs[:, -1, 0], split.inputs[:, -1, 1]
            return torch.stack([value, marker, value * marker], dim=1)

        train, test = splits["train"], splits["test"]
        return linear_mse(last_step(train), train.targets, last_step(test), test.targets)
