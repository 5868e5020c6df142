"""``best.pt`` and ``last.pt`` of the generic path, in the trainer's format, written once.

On the loop path the trainer runs with :class:`CheckpointsAtEnd` instead of its
``out_dir``: the same two files with the same contents as the trainer's own at the end
of the run, but written once (the best state is kept in memory until then) instead of
at every evaluation with an ``fsync`` each, which cost about a sixth of a small
model's run; a memory run is never resumed from a mid-run ``last.pt`` (it retrains).

On the vmap path:

A trainer attached to the copy's model and run state writes them
(:meth:`rnnlab.train.Trainer.checkpoint_state`, as the C-kernel engine does), so
:func:`rnnlab.load_run`, ``rnnlab evaluate`` and ``rnnlab predict`` read them like any
run's. ``best.pt`` holds the best dev parameters and the run as it stood at that
evaluation; ``last.pt`` the parameters at the end (``best_model`` beside them). The
optimiser's moments are not kept per copy on this path, so both carry a fresh
optimiser state and ``finished=True``: they score and predict; they are not a point
to resume training from (a memory run never resumes, it retrains).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.train import TrainConfig, Trainer
from rnnlab.train.callbacks import Callback
from rnnlab.train.checkpoint import BEST, LAST, save_checkpoint
from rnnlab.train.optim import make_optimizer
from rnnlab.train.state import TrainState


def save_copy_checkpoints(out_dir: Path, model: nn.Module, config: TrainConfig, *,
                          metric: str, meta: dict[str, Any] | None, n_train: int,
                          best: dict[str, Tensor] | None, last: dict[str, Tensor],
                          run: dict[str, Any], generator: torch.Generator) -> None:
    """Write ``best.pt`` (when there was a best) then ``last.pt`` into ``out_dir``.

    ``run``: ``step``, ``epoch``, ``best_score``, ``best_step``, ``stopped_early``,
    ``seconds`` and ``history`` of the copy at the end. ``model`` is left holding
    ``last``'s parameters; the caller loads the ones it keeps.
    """
    history = list(run["history"])
    kinds: list[tuple[str, dict[str, Tensor], dict[str, Any]]] = []
    if best is not None:
        upto = [r for r in history if r["step"] <= run["best_step"]]
        kinds.append(("best", best, {**run, "step": run["best_step"], "history": upto,
                                     "epoch": upto[-1]["epoch"] if upto else 0,
                                     "stopped_early": False}))
    kinds.append(("last", last, run))
    best_model = None
    for kind, params, at in kinds:
        with torch.no_grad():
            for name, value in params.items():
                model.get_parameter(name).copy_(value)
        state = TrainState(
            step=at["step"], epoch=at["epoch"], best_score=at["best_score"],
            best_step=at["best_step"], last_eval_step=at["step"],
            stopped_early=at["stopped_early"], finished=True, seconds=at["seconds"],
            history=[dict(r) for r in at["history"]], n_train=n_train,
            data_generator=generator.get_state(),
            best_model=None if kind == "best" else best_model)
        trainer = Trainer(config)
        trainer.attach(model, make_optimizer(config, model), state, metric=metric, meta=meta)
        save_checkpoint(trainer.checkpoint_state(kind), out_dir / (BEST if kind == "best"
                                                                  else LAST))
        if kind == "best":
            best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}


class CheckpointsAtEnd(Callback):
    """The trainer's ``best.pt`` (as at the best evaluation) and ``last.pt``, written when
    training ends rather than at every evaluation."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.best: dict[str, Any] | None = None

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record.get("improved"):
            self.best = _detached(trainer.checkpoint_state("best"))

    def on_train_end(self, trainer: Trainer) -> None:
        if self.best is not None:
            save_checkpoint(self.best, self.out_dir / BEST)
        save_checkpoint(trainer.checkpoint_state("last"), self.out_dir / LAST)


def _detached(value: Any) -> Any:
    """A copy whose tensors no later training step can change."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return type(value)((k, _detached(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value)
    return value
