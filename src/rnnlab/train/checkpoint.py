"""Checkpoints: everything needed to resume a run exactly, saved atomically, loaded safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(path, weights_only=True)``: no pickled classes, nothing that
executes code. Configurations are stored as ``asdict`` dicts for the same reason.

Keys:
    ``format``, ``version``: identify an rnnlab checkpoint.
    ``kind``: ``"last"`` (written at every evaluation and at the end) or ``"best"``.
    ``model``, ``optimizer``: state dicts.
    ``rng``: the global generators (:func:`rnnlab.seeding.rng_state`).
    ``data_generator``: the state of the data-order generator after this epoch's draw.
    ``order``: this epoch's order of the training examples.
    ``step``, ``epoch``, ``batch_in_epoch``: where the run stands (``epoch`` counts
    finished epochs; ``batch_in_epoch`` batches done within the current one).
    ``best_score``, ``best_step``, ``last_eval_step``, ``history``, ``finished``.
    ``train_config``: :meth:`TrainConfig.asdict`; ``meta``: the caller's configs
    (model config, task and its parameters, data seed...).
    ``callbacks``: each stateful callback's state.
    ``carried``: stateful (TBPTT) training's carried recurrent state, ``[h]`` or ``[h, c]``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from rnnlab.errors import RnnlabError
from rnnlab.io import atomic_torch_save

FORMAT = "rnnlab-checkpoint"
VERSION = 1
LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` atomically (temporary file in the same folder, fsync, rename)."""
    return atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or corrupt file is a user error."""
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError,
            ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RnnlabError(f"cannot read checkpoint {path}: {first}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RnnlabError(f"{path} is not an rnnlab checkpoint")
    if state.get("version") != VERSION:
        raise RnnlabError(
            f"{path} is checkpoint version {state.get('version')}; "
            f"this rnnlab reads version {VERSION}"
        )
    return state


def find_checkpoint(run_dir: str | os.PathLike, prefer: str = BEST) -> Path:
    """The best (or else last) checkpoint of a run folder, with a clear error when absent."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RnnlabError(f"no run folder at {run_dir}")
    for name in (prefer, LAST if prefer == BEST else BEST):
        if (run_dir / name).is_file():
            return run_dir / name
    raise RnnlabError(f"{run_dir} holds no checkpoint ({BEST} or {LAST}); is it a run folder?")
