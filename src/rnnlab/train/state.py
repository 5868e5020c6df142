"""The run state: where a training run stands, as plain values, and the data order.

:class:`TrainState` is the trainer's public run state (Lightning's ``state_dict``
habit): every field goes into ``last.pt`` under its own name and comes back on
resume. The lock-step engine fills one in for each job it trains and hands it to
:meth:`rnnlab.train.Trainer.attach`, so the checkpoints it writes are the trainer's
own, built by the trainer's code. :class:`DataOrder` is contract point 2, the one
generator that decides the order of the training examples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class TrainState:
    """Where a run stands; every field goes into the checkpoint under its name.

    ``epoch`` counts finished epochs and ``batch_in_epoch`` the batches done in the
    current one (see :meth:`position`). ``data_generator`` is the data-order
    generator's state after this epoch's draw and ``order`` that draw. ``best_model``
    holds the parameters of the best dev evaluation. ``carried`` is the recurrent
    state carried between chunks in stateful (truncated BPTT) training, as a list of
    tensors (``[h]`` or ``[h, c]``), ``None`` at the start of a stream.
    ``loader_rng``: training from a ``DataLoader``, the RNG states at this epoch's start
    (see :mod:`rnnlab.train.inputs`).
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float | None = None
    best_step: int | None = None
    last_eval_step: int = 0
    stopped_early: bool = False
    finished: bool = False
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    n_train: int = 0
    data_generator: Tensor | None = None
    order: Tensor | None = None
    best_model: dict[str, Tensor] | None = None
    carried: list[Tensor] | None = None
    loader_rng: dict[str, Tensor | None] | None = None

    @staticmethod
    def position(step: int, batches_per_epoch: int, in_loop: bool) -> tuple[int, int]:
        """``(epoch, batch_in_epoch)`` as the trainer's counters stand after ``step`` steps.

        An evaluation inside the loop (``in_loop``) sees an epoch's last batch before the
        counters roll over to the next epoch; at the end of training they have rolled.
        """
        nb = batches_per_epoch
        if in_loop and step > 0:
            epoch = (step - 1) // nb
            return epoch, step - epoch * nb
        return step // nb, step % nb

    @classmethod
    def from_checkpoint(cls, values: dict[str, Any]) -> TrainState:
        """The fields found in a checkpoint dict (others keep their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: values[k] for k in names if k in values})
        state.history = list(values.get("history", []))
        return state

    def asdict(self) -> dict[str, Any]:
        """Every field, by name (tensors as they are: checkpoints hold them)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class DataOrder:
    """Contract point 2: one generator seeded with ``seed``, one draw per epoch.

    Each epoch takes ``torch.randperm(n, generator=g)`` when ``shuffle`` is on, else
    ``torch.arange(n)``; nothing else draws from ``g``.
    """

    def __init__(self, seed: int, shuffle: bool) -> None:
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, n: int) -> Tensor:
        """The next epoch's order of ``n`` examples."""
        if self.shuffle:
            return torch.randperm(n, generator=self.generator)
        return torch.arange(n)

    def get_state(self) -> Tensor:
        return self.generator.get_state()

    def set_state(self, state: Tensor) -> None:
        self.generator.set_state(state)

    @classmethod
    def epochs(cls, seed: int, shuffle: bool, n: int, count: int) -> tuple[list[Tensor], Tensor]:
        """The orders of the first ``count`` epochs and the generator's state after them."""
        order = cls(seed, shuffle)
        draws = [order.draw(n) for _ in range(count)]
        return draws, order.get_state()


@dataclass
class FitResult:
    """What ``fit`` returns; :meth:`asdict` is JSON-ready."""

    metric: str
    best_dev_metric: float | None
    best_step: int | None
    steps: int
    epochs: int
    seconds: float
    stopped_early: bool
    resumed_from_step: int | None
    test: dict[str, float] | None
    history: list[dict[str, Any]]

    @property
    def best_score(self) -> float | None:
        """Another name for :attr:`best_dev_metric`."""
        return self.best_dev_metric

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
