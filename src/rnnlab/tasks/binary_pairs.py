"""Binary pairs (seed 003): tag each step with the 2-bit number (previous, current).

The input is a sequence of random bits; the class at step ``t`` reads the bit
``lag`` steps back and the current bit as a binary number::

    y_t = 2 * x_{t - lag} + x_t        (x_t = 0 for t < 0)

With ``lag=1`` this is the seed's task: input ``[0, 0, 1, 0, 1, 1]`` gives
classes ``[0, 0, 1, 2, 1, 3]``. A model that only separates {0, 2} from {1, 3}
has learned the current bit and nothing of the past, which is what the seed's
model did when its batch and time axes were swapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import lookup_accuracy


def pair_labels(bits: Tensor, lag: int = 1) -> Tensor:
    """Classes ``2 * bits[t - lag] + bits[t]`` (zeros before the start) for ``(N, L)`` bits."""
    earlier = torch.zeros_like(bits)
    earlier[:, lag:] = bits[:, :-lag]
    return 2 * earlier + bits


@dataclass
class BinaryPairs(Task):
    """Per-step 4-class tagging of a random bit sequence.

    Inputs ``(N, L, 1)`` float32 bits (a feature, as in the seed); targets
    ``(N, L)`` int64 in {0, 1, 2, 3}; metric: per-step accuracy. A memoryless
    model knows the current bit and must guess the earlier one: it scores
    ``(lag + (L - lag) / 2) / L`` = 0.51 on the default parameters. Chance
    (always class 0) is about 0.255.
    """

    name: ClassVar[str] = "binary-pairs"
    description: ClassVar[str] = "tag each step with the 2-bit number (bit lag steps back, bit now)"
    head: ClassVar[str] = "tag"
    input: ClassVar[str] = "features"
    metric: ClassVar[str] = "accuracy"

    length: int = 50
    lag: int = 1
    n_train: int = 1000
    n_dev: int = 200
    n_test: int = 1000

    def __post_init__(self) -> None:
        ensure(self.lag >= 1, f"lag must be at least 1 step back, got {self.lag}")
        ensure(self.length > self.lag,
              f"length must be greater than lag={self.lag} so some step sees an earlier bit, "
              f"got {self.length}")
        self.check_split_sizes()

    @property
    def input_size(self) -> int:
        return 1

    @property
    def num_outputs(self) -> int:
        return 4

    @property
    def chance(self) -> float:
        """Expected accuracy of always answering class 0 (both bits zero)."""
        return (self.lag * 0.5 + (self.length - self.lag) * 0.25) / self.length

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        bits = torch.randint(2, (n, self.length), generator=generator)
        return SplitData(bits.float().unsqueeze(-1), pair_labels(bits, self.lag))

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        train, test = splits["train"], splits["test"]
        return lookup_accuracy(train.inputs[..., 0].long(), train.targets,
                               test.inputs[..., 0].long(), test.targets)
