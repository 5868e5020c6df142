"""``TrainConfig``: everything that decides how a model is trained, in one frozen dataclass.

Frozen so a run cannot change its own recipe half-way; its :meth:`TrainConfig.asdict`
is stored in every checkpoint and ``summary.json``, so any number can be traced back
to the configuration that produced it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rnnlab.errors import RnnlabError, ensure

OPTIMIZERS = ("adam", "sgd")
LOSSES = ("auto", "cross_entropy", "mse")
METRICS = ("auto", "accuracy", "mse")
REDUCTIONS = ("mean", "sum")
PROGRESS = ("auto", "on", "off")
CHECKPOINTS = ("best+last", "last", "none")

# Fields that may differ between a checkpoint and the configuration resuming it:
# they change how long or how visibly a run goes, never the numbers it computes.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "max_steps", "progress", "threads", "early_stop_patience", "eval_batch_size",
     "checkpoints", "restore_best"}
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: schedule, optimiser, clipping, loss, evaluation and bookkeeping.

    Args:
        epochs: passes over the training split.
        max_steps: stop after this many optimiser steps even if epochs remain.
        batch_size: examples per optimiser step (the last batch of an epoch may be smaller).
        lr: learning rate.
        optimizer: ``"adam"`` or ``"sgd"``.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty passed to the optimiser.
        clip_norm: clip the global gradient norm (over all parameters) to this value.
        clip_value: clamp every gradient element to ``[-clip_value, clip_value]``.
        clip_per_param: clip each parameter's gradient norm separately to this value.
        eval_every: evaluate on dev every this many steps; ``None`` means once per epoch.
        eval_batch_size: batch size for evaluation and prediction.
        shuffle: draw a new permutation of the training split every epoch.
        seed: seeds the model initialisation (by the caller) and the data order.
        loss: ``"auto"`` (from the targets: integer -> cross-entropy, float -> MSE),
            ``"cross_entropy"`` or ``"mse"``.
        metric: ``"auto"`` (accuracy for integer targets, MSE for float targets),
            ``"accuracy"`` or ``"mse"``.
        reduction: ``"mean"`` or ``"sum"`` over the examples (and steps) of a batch.
        threads: ``torch.set_num_threads`` during fit (tiny models are fastest on one);
            ``None`` leaves torch's setting alone.
        progress: ``"auto"`` (a bar only on a terminal and not under ``CI=true``),
            ``"on"`` or ``"off"``.
        restore_best: at the end of fit, load the parameters of the best dev evaluation
            (before the test split is scored).
        early_stop_patience: stop after this many evaluations without improvement.
        stop_on_nonfinite: stop with a clear error when the training loss is nan/inf.
        checkpoints: with an ``out_dir``, which checkpoints to write: ``"best+last"``,
            ``"last"`` (enough to resume) or ``"none"`` (only ``metrics.csv``).
        tbptt: stateful training by truncated backpropagation through time, this many
            steps per chunk (see :mod:`rnnlab.train.stateful`): the rows of the training
            split are parallel streams, every optimiser step takes the next chunk of all
            of them and the state is carried (detached) from chunk to chunk and reset at
            the start of each epoch. ``batch_size`` and ``shuffle`` do not apply then
            (the streams are the batch, time is the order). ``None``: ordinary training.
    """

    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    clip_norm: float | None = None
    clip_value: float | None = None
    clip_per_param: float | None = None
    eval_every: int | None = None
    eval_batch_size: int = 1024
    shuffle: bool = True
    seed: int = 0
    loss: str = "auto"
    metric: str = "auto"
    reduction: str = "mean"
    threads: int | None = 1
    progress: str = "auto"
    restore_best: bool = True
    early_stop_patience: int | None = None
    stop_on_nonfinite: bool = True
    checkpoints: str = "best+last"
    tbptt: int | None = None

    def __post_init__(self) -> None:
        _positive_int(self, "epochs")
        _positive_int(self, "batch_size")
        _positive_int(self, "eval_batch_size")
        for name in ("max_steps", "eval_every", "threads", "early_stop_patience", "tbptt"):
            if getattr(self, name) is not None:
                _positive_int(self, name)
        ensure(math.isfinite(self.lr) and self.lr > 0,
              f"lr must be a positive finite number, got {self.lr!r}")
        for name in ("clip_norm", "clip_value", "clip_per_param"):
            value = getattr(self, name)
            ensure(value is None or (math.isfinite(value) and value > 0),
                  f"{name} must be a positive number or None, got {value!r}")
        ensure(self.momentum >= 0, f"momentum must be >= 0, got {self.momentum!r}")
        ensure(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        _choice(self, "optimizer", OPTIMIZERS)
        _choice(self, "loss", LOSSES)
        _choice(self, "metric", METRICS)
        _choice(self, "reduction", REDUCTIONS)
        _choice(self, "progress", PROGRESS)
        _choice(self, "checkpoints", CHECKPOINTS)
        ensure(isinstance(self.seed, int), f"seed must be an integer, got {self.seed!r}")

    def asdict(self) -> dict[str, Any]:
        """Plain values only, so it survives JSON and ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`asdict`, naming any unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RnnlabError(
                f"unknown TrainConfig field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _positive_int(config: TrainConfig, name: str) -> None:
    value = getattr(config, name)
    ensure(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
          f"{name} must be a positive integer, got {value!r}")


def _choice(config: TrainConfig, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(config, name)
    ensure(value in allowed, f"{name} must be one of {', '.join(allowed)}; got {value!r}")
