"""Callbacks: the side concerns of training, each a small object hung on the loop.

The loop in :mod:`rnnlab.train.trainer` only steps, evaluates and keeps the best
parameters; showing progress, logging metrics, writing checkpoints and stopping
early live here, in the Lightning habit. A callback sees the :class:`Trainer`
(``trainer.state`` holds step, epoch, best score and history) and may set
``trainer.should_stop``. A callback with state to resume returns it from
:meth:`Callback.state_dict`; it is stored in the checkpoint under its class name.

Hooks, in the order they are called::

    on_fit_start(trainer)                   # after a resume has been restored
    on_train_batch_end(trainer, loss)       # after each optimiser step
    on_evaluate(trainer, record)            # after each evaluation (every eval_every steps)
    on_train_end(trainer)                   # training done, before the best is restored
    on_fit_end(trainer, result)             # after the test split is scored
    on_exception(trainer, error)            # fit is about to raise ``error``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnlab.io import read_csv, write_csv
from rnnlab.train.checkpoint import BEST, LAST, save_checkpoint

if TYPE_CHECKING:
    from rnnlab.train.trainer import FitResult, Trainer


class Callback:
    """Base class: every hook does nothing."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_train_batch_end(self, trainer: Trainer, loss: float) -> None: ...

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None: ...

    def on_exception(self, trainer: Trainer, error: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def progress_wanted(setting: str) -> bool:
    """``"auto"`` shows a bar only on a terminal and never under ``CI=true``."""
    if setting != "auto":
        return setting == "on"
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() != "true"


class ProgressBar(Callback):
    """A tqdm bar over optimiser steps, showing the running loss and the last dev metric."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._postfix: dict[str, str] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=trainer.total_steps, initial=trainer.state.step, unit="step",
                         dynamic_ncols=True, leave=False, file=sys.stderr)

    def on_train_batch_end(self, trainer: Trainer, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if trainer.state.step % 10 == 0:
                self._postfix["loss"] = f"{loss:.4f}"
                self._bar.set_postfix(self._postfix, refresh=False)

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        key = f"dev_{trainer.metric}"
        if self._bar is not None and record.get(key) is not None:
            self._postfix[key] = f"{record[key]:.4f}"
            self._bar.set_postfix(self._postfix)

    def on_train_end(self, trainer: Trainer) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        self.on_train_end(trainer)


class MetricsLogger(Callback):
    """``metrics.csv``: one row per evaluation, rewritten atomically each time.

    Columns: ``step, epoch, train_loss, dev_loss, dev_<metric>`` (stateful training adds
    ``train_<metric>`` and ``dev_<metric>_fresh``: see :attr:`Trainer.columns`). On resume, rows
    after the checkpoint's step are dropped, so the file matches an uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self.columns = trainer.columns
        self.rows = []
        if trainer.state.step > 0 and self.path.exists():
            done = trainer.state.step
            self.rows = [row for row in read_csv(self.path)
                         if row.get("step", "").isdigit() and int(row["step"]) <= done]
        write_csv(self.path, self.columns, self.rows)

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.rows.append({key: csv_value(record.get(key)) for key in self.columns})
        write_csv(self.path, self.columns, self.rows)


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class ModelCheckpoint(Callback):
    """Writes ``last.pt`` at every evaluation and at the end, ``best.pt`` on improvement.

    ``best.pt`` is written before ``last.pt``: a crash between the two leaves a
    ``last.pt`` from the previous evaluation, and resuming from it recomputes (and
    rewrites) the same ``best.pt``.
    """

    def __init__(self, out_dir: str | os.PathLike, save_best: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.save_best = save_best

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record.get("improved") and self.save_best:
            save_checkpoint(trainer.checkpoint_state("best"), self.best_path)
        save_checkpoint(trainer.checkpoint_state("last"), self.last_path)

    def on_train_end(self, trainer: Trainer) -> None:
        save_checkpoint(trainer.checkpoint_state("last"), self.last_path)


class EarlyStopping(Callback):
    """Stop after ``patience`` evaluations in a row without a new best dev score."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.bad_evaluations = 0

    def observe(self, improved: bool) -> bool:
        """Count one dev evaluation; ``True`` when training should stop now.

        The one early-stopping rule: the trainer calls it through :meth:`on_evaluate`,
        the lock-step engine directly for each job.
        """
        self.bad_evaluations = 0 if improved else self.bad_evaluations + 1
        return self.bad_evaluations >= self.patience

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record.get(f"dev_{trainer.metric}") is None:
            return
        if self.observe(bool(record.get("improved"))):
            trainer.state.stopped_early = True
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad_evaluations = int(state.get("bad_evaluations", 0))
