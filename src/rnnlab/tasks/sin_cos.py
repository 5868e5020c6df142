"""Regress cos from sin over chunks of a long wave (seed 002).

A chunk samples ``length`` evenly spaced times over ``span`` radians (both ends
included, as ``np.linspace`` does in the seed); the input is ``sin t`` and the
target ``cos t`` at every step. ``sin t`` alone does not fix ``cos t``: its sign
depends on whether the wave is rising or falling, which only the past tells.

The seed walks along one wave, chunk ``k`` covering ``[k*pi, (k+1)*pi]``, and
carries the recurrent state from one chunk to the next; :meth:`SinCos.stream`
gives those consecutive chunks. :meth:`SinCos.splits` gives independent chunks
at random phases, for training with a fresh state per chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import linear_mse


@dataclass
class SinCos(Task):
    """Per-step regression of ``cos t`` from ``sin t``.

    Inputs and targets ``(N, L, 1)`` float32 in [-1, 1]; metric: MSE. A
    memoryless model can only answer ``E[cos t | sin t] = 0``; its MSE is about
    0.5 on the default parameters, the same as chance (predict 0).
    """

    name: ClassVar[str] = "sin-cos"
    description: ClassVar[str] = "regress cos t from sin t, chunk by chunk"
    head: ClassVar[str] = "regress"
    input: ClassVar[str] = "features"
    metric: ClassVar[str] = "mse"

    length: int = 10
    span: float = math.pi
    n_train: int = 256
    n_dev: int = 64
    n_test: int = 256

    def __post_init__(self) -> None:
        ensure(self.length >= 2, f"length must be at least 2 steps per chunk, got {self.length}")
        ensure(self.span > 0, f"span must be a positive number of radians, got {self.span}")
        self.check_split_sizes()

    @property
    def input_size(self) -> int:
        return 1

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def chance(self) -> float:
        """MSE of always predicting 0."""
        return 0.5

    def _chunks(self, starts: torch.Tensor) -> SplitData:
        times = starts.reshape(-1, 1) + torch.linspace(0, self.span, self.length,
                                                       dtype=torch.float64)
        return SplitData(torch.sin(times).float().unsqueeze(-1),
                         torch.cos(times).float().unsqueeze(-1))

    def stream(self, n_chunks: int, start: float = 0.0) -> SplitData:
        """``n_chunks`` consecutive chunks, chunk ``k`` starting at ``start + k * span``.

        Feed them in order and carry the state across chunks, as the seed does.
        """
        ensure(n_chunks >= 1, f"n_chunks must be at least 1, got {n_chunks}")
        return self._chunks(start + self.span * torch.arange(n_chunks, dtype=torch.float64))

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        """``n`` waves at random phases, cut into chunks (the splits come from
        :meth:`Task.splits`)."""
        phases = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
        return self._chunks(phases)

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        train, test = splits["train"], splits["test"]
        return linear_mse(train.inputs.reshape(-1, 1), train.targets.reshape(-1, 1),
                          test.inputs.reshape(-1, 1), test.targets.reshape(-1, 1))
