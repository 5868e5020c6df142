"""Burst detection (seed 000): say 1 until a burst has been seen, 0 afterwards.

The signal is zero except for one half-sine burst of ``burst_width`` steps that
starts at a random real time ``s`` uniform in ``[0, max_start)``::

    x_t = sin(pi * (t - s) / burst_width)   if s <= t < s + burst_width, else 0
    y_t = 1                                  if t < s + burst_width,      else 0

Before and after the burst the input is the same (zero) but the target differs,
so a model must remember whether the burst has already happened. This is the
task of the Q&A thread in which a 16-unit ``nn.RNN`` "won't learn a very simple
function" because its state was carried from one training iteration to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import lookup_accuracy


@dataclass
class Burst(Task):
    """Per-step binary tagging of a signal with one half-sine burst.

    Inputs ``(N, L, 1)`` float32; targets ``(N, L)`` int64 in {0, 1}; metric:
    per-step accuracy. The memoryless baseline (a lookup from "is the input
    zero?" to the majority label) cannot tell before from after the burst and
    scores about 0.81 on the default parameters (it says 0 at every zero input
    and 1 during the burst); chance (always 0) is about 0.727.
    """

    name: ClassVar[str] = "burst"
    description: ClassVar[str] = "say 1 until a half-sine burst has passed, 0 afterwards"
    head: ClassVar[str] = "tag"
    input: ClassVar[str] = "features"
    metric: ClassVar[str] = "accuracy"

    length: int = 130
    burst_width: int = 10
    max_start: float = 50.0
    n_train: int = 256
    n_dev: int = 64
    n_test: int = 256

    def __post_init__(self) -> None:
        ensure(self.burst_width >= 1,
              f"burst_width must be at least 1 step, got {self.burst_width}")
        ensure(self.max_start >= 0, f"max_start must be >= 0, got {self.max_start}")
        ensure(self.length > self.max_start + self.burst_width,
              f"length must exceed max_start + burst_width = "
              f"{self.max_start + self.burst_width:g} so every burst ends inside the "
              f"sequence, got {self.length}")
        self.check_split_sizes()

    @property
    def input_size(self) -> int:
        return 1

    @property
    def num_outputs(self) -> int:
        return 2

    @property
    def chance(self) -> float:
        """Expected accuracy of always answering the majority label (0)."""
        # Steps labelled 1 in a sequence: ceil(s) + burst_width for a real start s.
        expected_ceil = sum((self.max_start - k) / self.max_start
                            for k in range(math.ceil(self.max_start))) if self.max_start else 0.0
        p_one = (expected_ceil + self.burst_width) / self.length
        return max(p_one, 1.0 - p_one)

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        """``n`` sequences drawn with ``generator``; also used by the recipe."""
        start = torch.rand(n, 1, generator=generator, dtype=torch.float64) * self.max_start
        offset = torch.arange(self.length, dtype=torch.float64) - start
        in_burst = (offset >= 0) & (offset < self.burst_width)
        signal = torch.where(in_burst, torch.sin(offset * math.pi / self.burst_width), 0.0)
        targets = (offset < self.burst_width).long()
        return SplitData(signal.float().unsqueeze(-1), targets)

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        train, test = splits["train"], splits["test"]
        return lookup_accuracy((train.inputs[..., 0] != 0).long(), train.targets,
                               (test.inputs[..., 0] != 0).long(), test.targets)
