"""Next-step prediction of a sine wave, with an autoregressive rollout (seed 001).

Each sequence samples ``sin`` at ``length + 1`` evenly spaced times over
``span`` radians, starting at a random phase ``s``; the input is the first
``length`` samples and the target the last ``length`` (the next value)::

    t_k = s + k * span / length,   x_k = sin(t_k),   y_k = x_{k+1}

One-step prediction is easy; the interesting number is the *rollout*: prime
the model with a few true values, then feed it its own predictions and compare
with the truth (:func:`rollout`, :func:`rollout_mse`). Errors compound, so only
a model that has learned the dynamics stays on the curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import linear_mse


@dataclass
class Sine(Task):
    """Per-step regression of the next sample of a sine wave.

    Inputs ``(N, L, 1)`` and targets ``(N, L, 1)`` float32 in [-1, 1]; metric:
    MSE. A memoryless model sees ``sin t`` but not whether the wave is rising or
    falling; its best guess is ``cos(dt) sin t`` and its MSE is about
    ``sin(dt)^2 / 2`` = 0.020 on the default parameters (``dt`` = 10/49). Chance
    (predict 0) is 0.5.

    The seed draws whole-number starts in ``[0, 10)``, i.e. only ten distinct
    sequences; ``integer_start=True`` reproduces that, the default draws real
    starts so that test sequences are new.
    """

    name: ClassVar[str] = "sine"
    description: ClassVar[str] = "predict the next sample of a sine wave; roll it out"
    head: ClassVar[str] = "regress"
    input: ClassVar[str] = "features"
    metric: ClassVar[str] = "mse"

    length: int = 49
    span: float = 10.0
    max_start: float = 10.0
    integer_start: bool = False
    n_train: int = 256
    n_dev: int = 64
    n_test: int = 256

    def __post_init__(self) -> None:
        ensure(self.length >= 2, f"length must be at least 2 steps, got {self.length}")
        ensure(self.span > 0, f"span must be a positive number of radians, got {self.span}")
        ensure(self.max_start >= (1 if self.integer_start else 0),
              f"max_start must be >= {1 if self.integer_start else 0}, got {self.max_start}")
        self.check_split_sizes()

    @property
    def input_size(self) -> int:
        return 1

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def chance(self) -> float:
        """MSE of always predicting 0, the mean of a sine over whole periods."""
        return 0.5

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        """``n`` sequences drawn with ``generator``."""
        if self.integer_start:
            start = torch.randint(int(self.max_start), (n, 1), generator=generator).double()
        else:
            start = torch.rand(n, 1, generator=generator, dtype=torch.float64) * self.max_start
        times = start + torch.linspace(0, self.span, self.length + 1, dtype=torch.float64)
        wave = torch.sin(times).float().unsqueeze(-1)
        return SplitData(wave[:, :-1], wave[:, 1:])

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        train, test = splits["train"], splits["test"]
        return linear_mse(train.inputs.reshape(-1, 1), train.targets.reshape(-1, 1),
                          test.inputs.reshape(-1, 1), test.targets.reshape(-1, 1))


@torch.no_grad()
def rollout(model: nn.Module, prime: Tensor, steps: int) -> Tensor:
    """Feed ``prime`` ``(N, P, F)``, then ``steps - 1`` of the model's own outputs.

    Returns the ``steps`` predictions ``(N, steps, F)``: the first is the model's
    output after the last primed value, each later one is the output for the
    previous prediction fed back as input, with the state carried throughout.
    ``model`` follows the ``build_model`` contract (``state=``, ``return_state=``).
    """
    ensure(prime.shape[1] >= 1, "rollout needs at least one true value to start from")
    ensure(steps >= 1, f"rollout steps must be at least 1, got {steps}")
    output, state = model(prime, state=None, return_state=True)
    current = output[:, -1:]
    predictions = [current]
    for _ in range(steps - 1):
        current, state = model(current, state=state, return_state=True)
        predictions.append(current)
    return torch.cat(predictions, dim=1)


def rollout_mse(model: nn.Module, data: SplitData, prime: int = 10) -> tuple[float, Tensor]:
    """MSE of the rollout against the truth after priming with ``prime`` true inputs.

    Returns ``(mse, predictions)``; ``predictions[:, k]`` is compared with
    ``data.targets[:, prime - 1 + k]``.
    """
    length = data.inputs.shape[1]
    ensure(1 <= prime <= length, f"prime must be between 1 and the length {length}, got {prime}")
    was_training = model.training
    model.eval()
    predictions = rollout(model, data.inputs[:, :prime], length - prime + 1)
    model.train(was_training)
    truth = data.targets[:, prime - 1:]
    return float(((predictions - truth) ** 2).mean()), predictions
