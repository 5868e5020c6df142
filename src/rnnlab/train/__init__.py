"""Training: ``TrainConfig``, the ``Trainer`` (``fit``/``evaluate``/``predict``), callbacks
and checkpoints. The determinism contract is in :mod:`rnnlab.train.trainer`."""

from rnnlab.train.callbacks import (
    Callback,
    EarlyStopping,
    MetricsLogger,
    ModelCheckpoint,
    ProgressBar,
)
from rnnlab.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from rnnlab.train.config import TrainConfig
from rnnlab.train.trainer import (
    FitResult,
    Trainer,
    TrainState,
    clip_gradients,
    compute_loss,
    make_optimizer,
    seeded_model,
)

__all__ = [
    "Callback", "EarlyStopping", "FitResult", "MetricsLogger", "ModelCheckpoint",
    "ProgressBar", "TrainConfig", "TrainState", "Trainer", "clip_gradients", "compute_loss",
    "find_checkpoint", "load_checkpoint", "make_optimizer", "save_checkpoint", "seeded_model",
]
