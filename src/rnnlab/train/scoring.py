"""Loss, metric and the rules that judge a score: one copy for the trainer and the engine.

Everything here is a pure function of outputs and targets (contract points 4 and 5
of :mod:`rnnlab.train.trainer`), so the lock-step engine scores its own logits with
exactly the trainer's numbers: :class:`Scores` adds up batches the way
``Trainer.evaluate`` does, :func:`is_improvement` decides a new best and
:func:`nonfinite_message` words the stop of a run whose loss became nan or inf.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.errors import ensure
from rnnlab.train.checkpoint import LAST


def forward(model: nn.Module, inputs: Tensor, lengths: Tensor | None) -> Tensor:
    """Call the model, passing ``lengths`` only when there are some (plain modules work)."""
    output = model(inputs) if lengths is None else model(inputs, lengths=lengths)
    if isinstance(output, tuple):
        output = output[0]
    return output


def auto_metric(targets: Tensor) -> str:
    """``"mse"`` for real-valued targets, ``"accuracy"`` for class labels."""
    return "mse" if targets.is_floating_point() else "accuracy"


def loss_kind(setting: str, targets: Tensor) -> str:
    """The loss a config's ``loss`` setting means for these targets."""
    if setting == "auto":
        return "mse" if targets.is_floating_point() else "cross_entropy"
    ensure(setting != "cross_entropy" or not targets.is_floating_point(),
          "loss 'cross_entropy' needs integer class targets, but the targets are real numbers")
    return setting


def _valid_steps(lengths: Tensor | None, steps: int, batch: int) -> Tensor | None:
    if lengths is None:
        return None
    return torch.arange(steps).unsqueeze(0) < lengths.reshape(batch, 1)


def _regression_terms(output: Tensor, targets: Tensor,
                      lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """Outputs and float targets aligned, keeping only the valid steps of each sequence."""
    targets = targets.to(output.dtype)
    if targets.shape != output.shape and targets.numel() == output.numel():
        targets = targets.reshape(output.shape)
    if output.dim() >= 3 and lengths is not None:  # (N, L, F): per step; (N, F): per sequence
        valid = _valid_steps(lengths, output.shape[1], output.shape[0])
        output, targets = output[valid], targets[valid]
    return output, targets


def compute_loss(output: Tensor, targets: Tensor, lengths: Tensor | None, kind: str,
                 reduction: str) -> tuple[Tensor, int]:
    """The loss by the contract (point 4) and the number of terms it covers."""
    if kind == "cross_entropy":
        if targets.dim() >= 2:  # tagging: (N, L, C) against (N, L)
            valid = _valid_steps(lengths, targets.shape[1], targets.shape[0])
            if valid is not None:
                output, targets = output[valid], targets[valid]
            else:
                output, targets = output.reshape(-1, output.shape[-1]), targets.reshape(-1)
        counted = int((targets != -100).sum())
        return F.cross_entropy(output, targets, reduction=reduction), counted
    output, targets = _regression_terms(output, targets, lengths)
    return F.mse_loss(output, targets, reduction=reduction), int(targets.numel())


def metric_sum_count(output: Tensor, targets: Tensor, lengths: Tensor | None,
                     metric: str) -> tuple[float, int]:
    """The metric's numerator and denominator over a batch (so batches add up exactly)."""
    if metric == "accuracy":
        predicted = output.argmax(-1)
        valid = (targets != -100)
        if targets.dim() >= 2 and lengths is not None:
            valid = valid & _valid_steps(lengths, targets.shape[1], targets.shape[0])
        return float(((predicted == targets) & valid).sum()), int(valid.sum())
    output, targets = _regression_terms(output, targets, lengths)
    return float(((output - targets) ** 2).sum()), int(targets.numel())


class Scores:
    """Loss and metric summed over batches: ``{"loss": per term, metric: value}``.

    ``Trainer.evaluate`` feeds it the model's outputs batch by batch; the engine feeds
    it slices of logits it computed itself, with the same batch bounds, so both get
    the same numbers.
    """

    def __init__(self, kind: str, metric: str) -> None:
        self.kind, self.metric = kind, metric
        self.loss_sum, self.terms, self.metric_sum, self.metric_terms = 0.0, 0, 0.0, 0

    def add(self, output: Tensor, targets: Tensor, lengths: Tensor | None = None) -> None:
        loss, count = compute_loss(output, targets, lengths, self.kind, "sum")
        self.loss_sum, self.terms = self.loss_sum + float(loss), self.terms + count
        value, count = metric_sum_count(output, targets, lengths, self.metric)
        self.metric_sum, self.metric_terms = self.metric_sum + value, self.metric_terms + count

    def result(self) -> dict[str, float]:
        return {"loss": self.loss_sum / max(self.terms, 1),
                self.metric: self.metric_sum / max(self.metric_terms, 1)}


def is_improvement(metric: str, score: float, best: float | None) -> bool:
    """Contract point 5: a finite score strictly better than every earlier one
    (higher accuracy, lower MSE)."""
    if not math.isfinite(score):
        return False
    if best is None:
        return True
    return score > best if metric == "accuracy" else score < best


def checkpoint_kept(out_dir: Path | None, written_step: int | None,
                    checkpoints_off: bool = False) -> str:
    """What a failed run leaves behind, for :func:`nonfinite_message`.

    ``written_step`` is the step of the last ``last.pt`` written (``None``: none yet).
    """
    if checkpoints_off:
        return "checkpoints are off (checkpoints='none'), so none was kept"
    if out_dir is None:
        return "no out_dir was given, so no checkpoint was kept"
    if written_step is None:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint is kept at {out_dir / LAST} (step {written_step})"


def nonfinite_message(value: float, step: int, epoch: int, kept: str) -> str:
    """The one sentence for a loss that became nan/inf at (1-based) ``step`` and ``epoch``;
    with a finite ``value``, that step's update made the parameters non-finite."""
    if math.isfinite(value):
        what = "the parameters became non-finite"
    else:
        what = f"loss became {'nan' if math.isnan(value) else 'infinite'}"
    return (f"{what} at step {step} (epoch {epoch}); {kept}; "
            "try a lower learning rate or gradient clipping (clip_norm)")
