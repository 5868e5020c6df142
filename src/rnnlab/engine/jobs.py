"""What the engine trains (:class:`Job`) and each job's schedule, fixed before training.

A job is one ordinary training run: splits, a :class:`~rnnlab.models.ModelConfig`,
a :class:`~rnnlab.train.TrainConfig` and an output folder. Everything the
trainer decides while it runs (which rows form each batch, when it evaluates,
which epoch a step belongs to) follows from the determinism contract in
:mod:`rnnlab.train.trainer` and is computed here up front, so the kernel can run
hundreds of steps in one call.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.engine.layout import CELL_CODES, HEAD_CODES, Shape
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import IGNORE, SplitData
from rnnlab.train.config import TrainConfig
from rnnlab.train.data import as_split, num_batches
from rnnlab.train.state import DataOrder

LOOP_HINT = "train it with the ordinary Trainer (rnnlab memory --engine loop)"


@dataclass
class Job:
    """One run for the engine: the same arguments ``Trainer.fit`` takes, plus the model config.

    The model is built by the contract: ``seed_everything(train_config.seed)``, then
    ``build_model(model_config)``. ``out_dir`` receives ``metrics.csv``, ``best.pt`` and
    ``last.pt`` as the trainer writes them; ``meta`` is stored in the checkpoints.
    """

    train: Any
    dev: Any
    model_config: Any
    train_config: TrainConfig
    test: Any = None
    out_dir: str | os.PathLike | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass
class Schedule:
    """Rows of every batch and the evaluation points of one job.

    ``rows[offsets[s]:offsets[s+1]]`` are the training rows of step ``s`` (0-based);
    ``evals`` the steps (1-based counts) after which dev is scored.
    """

    n_train: int
    batches_per_epoch: int
    total_steps: int
    rows: np.ndarray
    offsets: np.ndarray
    evals: list[int]
    in_loop_evals: frozenset[int]


def check_supported(job: Job, index: int) -> Shape:
    """The kernel shape of ``job``, or :class:`RnnlabError` naming what the engine cannot do.

    The engine trains one unidirectional layer of a built-in cell on token ids or real
    features, with a ``classify`` head (last state, cross-entropy), a ``tag`` head (every
    step, cross-entropy where the label is not -100) or a ``regress-last`` head (last
    state, mean squared error): every task of the memory suite.
    """
    mc, tc = job.model_config, job.train_config
    label = job.name or f"job {index}"

    def refuse(what: str) -> RnnlabError:
        return RnnlabError(f"{label}: the engine cannot train {what}; {LOOP_HINT}")

    get = lambda name, default=None: getattr(mc, name, default)  # noqa: E731
    if get("cell") not in CELL_CODES:
        raise refuse(f"cell {get('cell')!r} (it trains {', '.join(CELL_CODES)})")
    if get("num_layers", 1) != 1 or get("bidirectional", False):
        raise refuse("stacked or bidirectional layers (one unidirectional layer only)")
    features = get("input", "tokens") == "features"
    head = get("head", "classify")
    if head not in HEAD_CODES:
        raise refuse(f"a {head!r} head (it trains {', '.join(HEAD_CODES)})")
    if get("bias", "two") != "two":
        raise refuse(f"bias={get('bias')!r} (the kernel's cells have torch's two bias "
                     "vectors, b_ih and b_hh)")
    if get("pool", "last") != "last":
        raise refuse(f"pool={get('pool')!r} (its head reads the last state only)")
    if get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise refuse(f"the {get('nonlinearity')!r} nonlinearity (tanh and relu)")
    loss, metric = ("mse", "mse") if head == "regress-last" else ("cross_entropy", "accuracy")
    if tc.loss not in ("auto", loss) or tc.metric not in ("auto", metric):
        raise refuse(f"loss {tc.loss!r} with metric {tc.metric!r} for a {head!r} head "
                     f"({loss} and {metric})")
    classes = get("num_outputs")
    width = get("input_size") if features else get("vocab_size")
    if width is None or classes is None:
        raise RnnlabError(f"{label}: the model config needs "
                          f"{'input_size' if features else 'vocab_size'} and num_outputs")
    train = as_split(job.train, "train")
    for name, split in (("train", train), ("dev", job.dev), ("test", job.test)):
        if split is None:
            if name == "dev":
                raise refuse("without a dev split (it selects the best checkpoint on dev)")
            continue
        split = as_split(split, name)
        _check_split(split, name, head, features, int(width), int(classes), refuse)
        if split.lengths is not None and bool((split.lengths != split.inputs.shape[1]).any()):
            raise refuse(f"{name} sequences of different lengths (one length per job)")
        if split.inputs.shape[1] != train.inputs.shape[1]:
            raise refuse("splits of different sequence lengths")
        if not features:
            check_range(split, int(width), int(classes), label)
    return Shape(cell=get("cell"), vocab=0 if features else int(width),
                 embed=int(width) if features else int(get("embedding_dim")),
                 hidden=int(get("hidden_size")), classes=int(classes),
                 length=int(train.inputs.shape[1]), relu=get("nonlinearity") == "relu",
                 head=head, features=int(width) if features else 0)


def _check_split(split: SplitData, name: str, head: str, features: bool, width: int,
                 classes: int, refuse: Any) -> None:
    """Inputs and targets of the shapes and types the head and input kind need."""
    x, y = split.inputs, split.targets
    if features:
        if x.dim() != 3 or not x.is_floating_point() or x.shape[2] != width:
            raise refuse(f"{name} inputs that are not (N, L, {width}) real features")
    elif x.dim() != 2 or x.is_floating_point():
        raise refuse(f"{name} inputs that are not (N, L) integer tokens")
    if head == "regress-last":
        shapes = {(classes,), ()} if classes == 1 else {(classes,)}
        if not y.is_floating_point() or tuple(y.shape[1:]) not in shapes:
            raise refuse(f"{name} targets that are not (N, {classes}) real values")
    elif head == "tag":
        if y.is_floating_point() or tuple(y.shape) != tuple(x.shape[:2]):
            raise refuse(f"{name} targets that are not (N, L) class labels, one per step")
    elif y.dim() != 1 or y.is_floating_point():
        raise refuse(f"{name} targets that are not (N,) class labels")


def check_range(split: SplitData, vocab: int, classes: int, label: str) -> None:
    """Tokens and labels must index the tables (the kernel does not check bounds); a
    per-step label may also be -100, a step that is not scored."""
    if split.inputs.numel():
        low, high = torch.aminmax(split.inputs)
        if int(low) < 0 or int(high) >= vocab:
            raise RnnlabError(f"{label}: tokens must lie in 0..{vocab - 1}")
    targets = split.targets
    if targets.is_floating_point() or not targets.numel():
        return
    if targets.dim() > 1:  # unscored steps (-100) stand in for a valid label, 0
        targets = targets.masked_fill(targets == IGNORE, 0)
    low, high = torch.aminmax(targets)
    if int(low) < 0 or int(high) >= classes:
        raise RnnlabError(f"{label}: class labels must lie in 0..{classes - 1}")


def make_schedule(config: TrainConfig, n_train: int) -> Schedule:
    """Batches and evaluation points by contract points 2, 3 and 5."""
    nb = num_batches(n_train, config.batch_size)
    total = config.epochs * nb
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    epochs_needed = (total + nb - 1) // nb
    rows, offsets = [], [0]
    orders, _ = DataOrder.epochs(config.seed, config.shuffle, n_train, epochs_needed)
    for order in orders:
        rows.append(order.numpy().astype(np.int32))
        for start in range(0, n_train, config.batch_size):
            offsets.append(offsets[-1] + min(config.batch_size, n_train - start))
    flat_rows = np.concatenate(rows) if rows else np.zeros(0, np.int32)
    eval_every = config.eval_every or nb
    in_loop = list(range(eval_every, total + 1, eval_every))
    evals = in_loop + ([total] if not in_loop or in_loop[-1] != total else [])
    return Schedule(n_train=n_train, batches_per_epoch=nb, total_steps=total,
                    rows=np.ascontiguousarray(flat_rows),
                    offsets=np.asarray(offsets[: total + 1], dtype=np.int32),
                    evals=evals, in_loop_evals=frozenset(in_loop))


def out_path(job: Job) -> Path | None:
    return None if job.out_dir is None else Path(job.out_dir)


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
