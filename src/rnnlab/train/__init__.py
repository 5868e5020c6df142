"""Training: ``TrainConfig``, the ``Trainer`` (``fit``/``evaluate``/``predict``), its run
state, callbacks and checkpoints. The determinism contract is in :mod:`rnnlab.train.trainer`."""

from rnnlab.train.callbacks import (
    Callback,
    EarlyStopping,
    MetricsLogger,
    ModelCheckpoint,
    ProgressBar,
)
from rnnlab.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from rnnlab.train.config import TrainConfig
from rnnlab.train.optim import clip_gradients, make_optimizer
from rnnlab.train.scoring import Scores, compute_loss, is_improvement
from rnnlab.train.state import DataOrder, FitResult, TrainState
from rnnlab.train.trainer import Trainer, seeded_model

__all__ = [
    "Callback", "DataOrder", "EarlyStopping", "FitResult", "MetricsLogger", "ModelCheckpoint",
    "ProgressBar", "Scores", "TrainConfig", "TrainState", "Trainer", "clip_gradients",
    "compute_loss", "find_checkpoint", "is_improvement", "load_checkpoint", "make_optimizer",
    "save_checkpoint", "seeded_model",
]
