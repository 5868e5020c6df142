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
    ``digest``: SHA-256 over every other entry (:func:`digest`), so a flipped byte is
    refused on load instead of resuming or scoring different numbers.

Checkpoints of version 1 predate the digest; they still load, unverified (there is
nothing to check them against), so runs saved before the digest can be resumed.
From version 2 on the digest is required.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rnnlab.errors import RnnlabError
from rnnlab.io import atomic_torch_save

FORMAT = "rnnlab-checkpoint"
VERSION = 2
READABLE = (1, 2)  # version 1: no digest
LAST = "last.pt"
BEST = "best.pt"


def digest(state: Mapping[Any, Any]) -> str:
    """SHA-256 of a checkpoint's content, ``digest`` itself left out.

    Entries are visited in a fixed order (keys sorted by their repr); a tensor
    contributes its dtype, shape and bytes, anything else its type and repr, so the
    digest is the same for the same values however the dict was built.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=repr):
            h.update(f"{key!r}=".encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__[0]}{len(value)}:".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (any dict of tensors and plain values) with its digest, atomically
    (temporary file in the same folder, fsync, rename)."""
    full = {"format": FORMAT, "version": VERSION, **state}
    full.pop("digest", None)
    full["digest"] = digest(full)
    return atomic_torch_save(full, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and check its digest; a missing,
    damaged, tampered or hostile file is a user error in one line."""
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message advises retrying with weights_only=False, i.e. running
        # whatever code the file holds: never pass that on.
        if "GLOBAL" not in str(err):
            raise RnnlabError(f"cannot read checkpoint {path}: the file is damaged or not a "
                              "checkpoint (it is not a valid PyTorch file)") from err
        raise RnnlabError(f"cannot read checkpoint {path}: it holds objects other than tensors "
                          "and plain values, which rnnlab never loads (loading them could "
                          "run code)") from err
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError,
            IndexError, TypeError, AttributeError, UnicodeDecodeError, MemoryError) as err:
        raise RnnlabError(f"cannot read checkpoint {path}: the file is damaged or not a "
                          f"checkpoint ({_reason(err)})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RnnlabError(f"{path} is not an rnnlab checkpoint")
    if state.get("version") not in READABLE:
        raise RnnlabError(
            f"{path} is checkpoint version {state.get('version')!r}; "
            f"this rnnlab reads versions {', '.join(map(str, READABLE))}"
        )
    if state["version"] >= 2 and state.get("digest") != digest(state):
        raise RnnlabError(f"refusing checkpoint {path}: its content does not match its "
                          "digest (the file was damaged or edited after it was written)")
    return state


def _reason(err: BaseException) -> str:
    """The first line of an error, without torch's advice about weights_only."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if "weights_only" in first or len(first) > 160:
        return type(err).__name__
    return first


def require(state: Mapping[str, Any], path: str | os.PathLike, *keys: str) -> None:
    """Refuse a checkpoint that lacks an entry a command needs, naming the entry."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise RnnlabError(f"{path}: the checkpoint has no {', '.join(missing)}; it was not "
                          "written by rnnlab train (or was edited), so the run cannot be "
                          "rebuilt from it")


def find_checkpoint(run_dir: str | os.PathLike, prefer: str = BEST) -> Path:
    """The best (or else last) checkpoint of a run folder, with a clear error when absent."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RnnlabError(f"no run folder at {run_dir}")
    for name in (prefer, LAST if prefer == BEST else BEST):
        if (run_dir / name).is_file():
            return run_dir / name
    raise RnnlabError(f"{run_dir} holds no checkpoint ({BEST} or {LAST}); is it a run folder?")
