"""A task as a user would write one (a ``Task`` subclass), for the tests that register it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.tasks import SplitData, Task


@dataclass
class FirstBit(Task):
    """A user's task: say the first bit of a random bit string, read at its end."""

    name: ClassVar[str] = "first-bit"
    description: ClassVar[str] = "say the first bit at the end"
    head: ClassVar[str] = "classify"
    metric: ClassVar[str] = "accuracy"
    memory_axis: ClassVar[str | None] = "length"
    memory_axis_label: ClassVar[str] = "bits after the first"
    memory_lengths: ClassVar[tuple[int, ...]] = (2, 4, 8)

    length: int = 6
    n_train: int = 64
    n_dev: int = 64
    n_test: int = 64

    @property
    def vocab_size(self) -> int:
        return 2

    @property
    def num_outputs(self) -> int:
        return 2

    @property
    def chance(self) -> float:
        return 0.5

    def splits(self, seed: int = 0) -> dict[str, SplitData]:
        g = torch.Generator().manual_seed(seed)
        sizes = (self.n_train, self.n_dev, self.n_test)
        bits = [torch.randint(2, (n, self.length), generator=g) for n in sizes]
        return {k: SplitData(b, b[:, 0].clone())
                for k, b in zip(("train", "dev", "test"), bits, strict=True)}

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        return 0.5
