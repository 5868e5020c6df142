"""Loggers: where a run's numbers go besides ``metrics.csv``.

A logger is a callback with three small methods to implement, so that any tracker is
a few lines (the Lightning ``Logger`` habit)::

    class MLflowLogger(Logger):
        def log_hyperparams(self, params):  mlflow.log_params(params)
        def log_metrics(self, metrics, step):  mlflow.log_metrics(metrics, step=step)

The base class calls them: the flattened training configuration at the start, every
evaluation record (``train_loss``, ``dev_loss``, ``dev_<metric>``) at its step, and the
test scores (``test_<name>``) at the end; :meth:`Logger.finalize` runs at the end and on
an exception. ``metrics.csv`` is always written by :class:`~rnnlab.train.MetricsLogger`;
the loggers here add to it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rnnlab.errors import RnnlabError
from rnnlab.train.callbacks import Callback

if TYPE_CHECKING:
    from rnnlab.train.trainer import FitResult, Trainer

LOGGERS = ("csv", "tensorboard")


def _numbers(record: dict[str, Any], skip: tuple[str, ...] = ("step", "epoch")) -> dict[str, float]:
    return {key: float(value) for key, value in record.items()
            if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value))}


class Logger(Callback):
    """Base class: implement :meth:`log_metrics` (and optionally the other two)."""

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """Called once at the start with the run's settings."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finalize(self) -> None:
        """Called at the end of fit, and when fit raises."""

    def on_fit_start(self, trainer: Trainer) -> None:
        self.log_hyperparams(trainer.config.asdict())

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        metrics = _numbers(record, skip=("step", "epoch", "improved"))
        if metrics:
            self.log_metrics(metrics, int(record.get("step", trainer.state.step)))

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        if result.test:
            self.log_metrics({f"test_{k}": v for k, v in _numbers(result.test).items()},
                             int(result.steps))
        self.finalize()

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        self.finalize()


class TensorBoardLogger(Logger):
    """Scalars for TensorBoard (``tensorboard --logdir DIR``), through
    ``torch.utils.tensorboard``; needs the ``tensorboard`` package
    (``pip install "rnnlab[tensorboard]"``)."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise RnnlabError('the tensorboard logger needs the tensorboard package: '
                              'pip install "rnnlab[tensorboard]"') from err
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self._writer: Any = None

    def _writer_(self) -> Any:
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir))
        return self._writer

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        text = "\n".join(f"    {key} = {value!r}" for key, value in sorted(params.items()))
        self._writer_().add_text("config", text, 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        writer = self._writer_()
        for key, value in metrics.items():
            # "dev_accuracy" -> "dev/accuracy": TensorBoard groups charts by prefix.
            split, _, name = key.partition("_")
            writer.add_scalar(f"{split}/{name}" if name else key, value, step)
        writer.flush()

    def finalize(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class LineLogger(Logger):
    """One line per evaluation (Keras ``verbose=2``): for logs, pipes and job schedulers,
    where a progress bar would print nothing useful until the end."""

    def __init__(self, stream: IO[str] | None = None, prefix: str = "") -> None:
        self.stream = stream
        self.prefix = prefix
        self.total = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self.total = trainer.total_steps

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        stream = self.stream or sys.stdout
        parts = [f"{key} {value:.4g}" for key, value in metrics.items()]
        where = f"step {step}/{self.total}" if self.total else f"step {step}"
        print(f"{self.prefix}{where}: " + ", ".join(parts), file=stream, flush=True)


def make_logger(name: str, out_dir: str | os.PathLike | None) -> Logger | None:
    """The logger called ``name`` for a run writing into ``out_dir`` (``csv`` adds nothing:
    ``metrics.csv`` is always written)."""
    if name == "csv":
        return None
    if name == "tensorboard":
        if out_dir is None:
            raise RnnlabError("the tensorboard logger needs an output folder (--out)")
        return TensorBoardLogger(Path(out_dir) / "tensorboard")
    raise RnnlabError(f"unknown logger {name!r}; known loggers: {', '.join(LOGGERS)}")
