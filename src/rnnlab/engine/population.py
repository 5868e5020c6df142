"""Train many jobs at once, each exactly as :class:`rnnlab.train.Trainer` would alone.

The flow for every job (a *member* once built):

1. Build the model by contract point 1 (``seed_everything`` then ``build_model``) in
   the main thread, one job after another, and remember the global RNG state that
   follows, because the trainer's checkpoints record it.
2. Fix the whole schedule up front (:func:`rnnlab.engine.jobs.make_schedule`): batch
   rows of every step and the evaluation points.
3. Train segment by segment, one segment per evaluation: a backend runs all the
   segment's optimiser steps, then dev is scored with the trainer's own
   :class:`~rnnlab.train.scoring.Scores` on the backend's logits, a new best is judged
   by the trainer's :func:`~rnnlab.train.scoring.is_improvement` and early stopping by
   the trainer's :class:`~rnnlab.train.EarlyStopping`.
4. Write what the trainer writes (``metrics.csv``, ``best.pt``, ``last.pt``): each
   checkpoint is built by ``Trainer.checkpoint_state`` after :meth:`Trainer.attach`
   has put a trainer at the job's run state (:class:`~rnnlab.train.TrainState`), and
   the test split is scored as ``Trainer.evaluate`` scores it.

Backends (:mod:`rnnlab.engine.backends`): ``kernel`` runs each job in the C kernel,
several jobs in parallel threads (a kernel call releases the GIL); ``torch`` runs
jobs of one shape in lock-step with batched matrix products, and is the fallback
where no C compiler is present.

Unlike the trainer, the engine writes checkpoints only once, at the end of each
job (a killed engine run restarts its jobs; the memory experiment skips finished
ones), with the contents the trainer's last ``best.pt`` and ``last.pt`` would have.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.engine.backends import Group, get_backend
from rnnlab.engine.jobs import (
    Job,
    Schedule,
    check_supported,
    config_dict,
    make_schedule,
    out_path,
)
from rnnlab.engine.layout import Shape, flatten, unflatten
from rnnlab.errors import NonFiniteError, RnnlabError, ensure
from rnnlab.io import write_csv
from rnnlab.seeding import rng_state
from rnnlab.tasks.base import IGNORE, SplitData
from rnnlab.train.callbacks import EarlyStopping, csv_value
from rnnlab.train.checkpoint import BEST, LAST, save_checkpoint
from rnnlab.train.config import TrainConfig
from rnnlab.train.data import as_split, batch_ranges
from rnnlab.train.optim import make_optimizer
from rnnlab.train.scoring import (
    Scores,
    checkpoint_kept,
    is_improvement,
    nonfinite_message,
)
from rnnlab.train.state import DataOrder, FitResult, TrainState
from rnnlab.train.trainer import Trainer, seeded_model

# Threads the engine may use, when set (see worker_count).
WORKERS_ENV = "RNNLAB_WORKERS"


def columns(metric: str) -> list[str]:
    """``metrics.csv``'s columns, as the trainer writes them when it does not score train."""
    return ["step", "epoch", "train_loss", "dev_loss", f"dev_{metric}"]


@dataclass
class Snapshot:
    """A member's state at one evaluation: what a checkpoint written then would hold."""

    params: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    step: int
    in_loop: bool
    best_score: float | None
    best_step: int | None
    history: list[dict[str, Any]]
    bad_evaluations: int
    stopped_early: bool
    seconds: float


@dataclass
class Member:
    """One job being trained, with its data, its flat state and its bookkeeping.

    ``params``, ``exp_avg`` and ``exp_avg_sq`` are flat kernel-layout vectors: the
    parameters and Adam's two moments (SGD keeps its momentum buffer in ``exp_avg``).
    ``step`` counts optimiser steps for the backend (Adam's bias correction); ``done``
    is the step count at the last evaluation. ``keys`` maps kernel tensor names to the
    model's parameter names; ``rng`` is the global RNG state after building the model.
    ``inputs``/``targets`` are the training split as the kernel reads it (int32 tokens or
    float32 features; int32 labels or float32 values), ``step_terms`` the loss terms of
    each step's batch (what a summed loss is divided by for the curves, as the trainer
    does), ``loss``/``metric`` the trainer's loss and metric for this head.
    """

    index: int
    job: Job
    shape: Shape
    schedule: Schedule
    model: nn.Module
    keys: dict[str, str]
    rng: dict[str, Any]
    train: SplitData
    dev: SplitData
    test: SplitData | None
    inputs: np.ndarray
    targets: np.ndarray
    dev_inputs: np.ndarray
    step_terms: np.ndarray
    loss: str
    metric: str
    params: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    stopper: EarlyStopping | None
    step: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_step: int | None = None
    best: Snapshot | None = None
    last: Snapshot | None = None
    stopped: bool = False
    stopped_early: bool = False
    error: NonFiniteError | None = None
    seconds: float = 0.0

    @property
    def config(self) -> TrainConfig:
        return self.job.train_config

    def state_dict(self, flat: Tensor) -> dict[str, Tensor]:
        """The model's state dict holding the flat vector ``flat``."""
        tensors = unflatten(self.shape, flat)
        by_key = {key: tensors[name] for name, key in self.keys.items()}
        return {key: by_key[key] for key in self.model.state_dict()}


def train_population(jobs: Sequence[Job], *, backend: str = "auto",
                     workers: int | None = None) -> list[FitResult | NonFiniteError]:
    """Train every job; return their :class:`~rnnlab.train.FitResult` in job order.

    ``backend``: ``"auto"`` (the fastest this machine has, see
    :func:`rnnlab.engine.describe`), ``"kernel"`` or ``"torch"``. ``workers``: threads
    for the kernel backend (default: the CPUs this process may use). A job whose loss
    or parameters became non-finite has, in its slot, the
    :class:`~rnnlab.errors.NonFiniteError` saying so (the trainer's message); the
    other jobs train on.
    """
    results: dict[int, FitResult | NonFiniteError] = {}
    for index, result in iter_population(jobs, backend=backend, workers=workers):
        results[index] = result
    return [results[i] for i in range(len(jobs))]


def iter_population(jobs: Sequence[Job], *, backend: str = "auto", workers: int | None = None
                    ) -> Iterator[tuple[int, FitResult | NonFiniteError]]:
    """Yield ``(job index, FitResult)`` as each job finishes (its files are written first).

    A job whose loss or parameters became non-finite yields ``(job index,
    NonFiniteError)`` instead, stopped at that step: its ``best.pt``/``last.pt`` hold
    the last finite evaluation's state (none if it failed before one). Every job is
    checked before any training starts, so an unsupported job fails fast.
    """
    impl = get_backend(backend)
    shapes = [check_supported(job, i) for i, job in enumerate(jobs)]
    members = [_build(i, job, shape)
               for i, (job, shape) in enumerate(zip(jobs, shapes, strict=True))]
    groups = impl.group(members)
    # Tiny models run fastest single-threaded; parallelism comes from running jobs side by side.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    n_workers = max(1, min(workers or worker_count(), len(groups))) if impl.parallel else 1
    pool = concurrent.futures.ThreadPoolExecutor(n_workers)
    # Set when the caller stops early (Ctrl-C, an error, an abandoned generator), so the
    # workers stop at their next evaluation instead of training everything first.
    stop = threading.Event()
    try:
        # Longest first, so no worker is left with one long job at the end.
        ordered = sorted(groups, key=lambda g: -g.cost())
        futures = [pool.submit(_run_group, impl, g, stop) for g in ordered]
        for future in concurrent.futures.as_completed(futures):
            for member, result in future.result():
                yield member.index, member.error if member.error is not None else result
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def worker_count() -> int:
    """Threads the engine may run side by side: ``$RNNLAB_WORKERS`` when set (``rnnlab
    memory --workers N`` sets it, so does a Ray task for the CPUs it was given), else
    the CPUs this process may use."""
    explicit = os.environ.get(WORKERS_ENV, "").strip()
    if explicit:
        ensure(explicit.isdigit() and int(explicit) >= 1,
              f"${WORKERS_ENV} must be a whole number >= 1 (threads the engine may use), "
              f"got {explicit!r}")
        return int(explicit)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------- building
def kernel_inputs(split: SplitData, shape: Shape) -> np.ndarray:
    """A split's inputs for the kernel: int32 token ids, or float32 features."""
    kind = np.float32 if shape.features else np.int32
    return np.ascontiguousarray(split.inputs.numpy().astype(kind))


def _terms(split: SplitData, shape: Shape) -> np.ndarray:
    """Loss terms per training example: scored steps (tag), outputs (regress-last) or 1."""
    if shape.head == "tag":
        return (split.targets != IGNORE).sum(dim=1).numpy().astype(np.int64)
    per_row = shape.classes if shape.head == "regress-last" else 1
    return np.full(len(split), per_row, np.int64)


def _build(index: int, job: Job, shape: Shape) -> Member:
    cfg = job.train_config
    model = seeded_model(job.model_config, cfg.seed)
    rng = rng_state()
    keys = _parameter_keys(model, shape, job.name or f"job {index}")
    params = dict(model.named_parameters())
    flat = flatten(shape, {name: params[key] for name, key in keys.items()})
    train = as_split(job.train, "train")
    dev = as_split(job.dev, "dev")
    test = None if job.test is None else as_split(job.test, "test")
    schedule = make_schedule(cfg, len(train))
    row_terms = _terms(train, shape)[schedule.rows]
    starts = schedule.offsets[:-1]
    step_terms = (np.add.reduceat(row_terms, starts) if len(starts)
                  else np.zeros(0, np.int64))
    regress = shape.head == "regress-last"
    targets = train.targets.numpy().astype(np.float32 if regress else np.int32)
    return Member(
        index=index, job=job, shape=shape, schedule=schedule,
        model=model, keys=keys, rng=rng, train=train, dev=dev, test=test,
        inputs=kernel_inputs(train, shape), targets=np.ascontiguousarray(targets),
        dev_inputs=kernel_inputs(dev, shape), step_terms=step_terms,
        loss="mse" if regress else "cross_entropy", metric="mse" if regress else "accuracy",
        params=flat, exp_avg=torch.zeros_like(flat), exp_avg_sq=torch.zeros_like(flat),
        stopper=(None if cfg.early_stop_patience is None
                 else EarlyStopping(cfg.early_stop_patience)),
    )


def _parameter_keys(model: nn.Module, shape: Shape, label: str) -> dict[str, str]:
    """Which parameter of the model is which tensor of the kernel layout, by name and shape."""
    named = dict(model.named_parameters())
    expected = shape.torch_shapes()
    found: dict[str, str] = {}
    for key, param in named.items():
        leaf = key.rsplit(".", 1)[-1]
        if key.startswith("embedding."):
            name = "embedding"
        elif key.startswith("head."):
            name = "head_weight" if leaf == "weight" else "head_bias"
        elif leaf in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            name = leaf
        else:
            raise RnnlabError(f"{label}: the engine does not know the parameter {key!r}")
        if name in found or tuple(param.shape) != expected[name]:
            raise RnnlabError(f"{label}: unexpected parameter {key!r} of shape "
                              f"{tuple(param.shape)} for the engine's model")
        found[name] = key
    missing = [n for n in shape.names if n not in found]
    if missing:
        raise RnnlabError(f"{label}: the model lacks {', '.join(missing)} for the engine")
    return {name: found[name] for name in shape.names}


# ---------------------------------------------------------------------- training
def _run_group(impl: Any, group: Group, cancel: threading.Event
               ) -> list[tuple[Member, FitResult | None]]:
    """Train one group to the end, write its files, score its test splits.

    Runs in a worker thread: it touches only its own members (never the global RNG).
    """
    start = 0
    evals = group.members[0].schedule.evals
    for stop in evals:
        if all(m.stopped for m in group.members):
            break
        if cancel.is_set():
            return []
        began = time.perf_counter()
        losses, failed = impl.train(group, start, stop)
        spent = (time.perf_counter() - began) / len(group.members)
        for i, member in enumerate(group.members):
            if member.stopped:
                continue
            member.seconds += spent
            if failed[i] >= 0:
                _fail(member, start + int(failed[i]), float(losses[i, failed[i]]))
                continue
            member.done = stop
            began = time.perf_counter()
            _evaluate(impl, group, i, member, losses[i], start, stop)
            member.seconds += time.perf_counter() - began
        start = stop
    done = []
    for i, member in enumerate(group.members):
        _write_outputs(member)
        done.append((member, None if member.error else _result(impl, group, i, member)))
    return done


def _evaluate(impl: Any, group: Group, i: int, member: Member, losses: np.ndarray,
              start: int, stop: int) -> None:
    cfg, sched = member.config, member.schedule
    train_loss = 0.0
    for s, value in enumerate(losses.tolist()):
        if cfg.reduction == "sum":
            value /= max(int(member.step_terms[start + s]), 1)
        train_loss += value
    train_loss /= stop - start
    scores = score(member, impl.logits(group, i, member.dev_inputs), member.dev.targets)
    metric = member.metric
    value = scores[metric]
    epoch, in_epoch = TrainState.position(stop, sched.batches_per_epoch, in_loop=True)
    record = {"step": stop, "epoch": epoch + (1 if in_epoch else 0), "train_loss": train_loss,
              "dev_loss": scores["loss"], f"dev_{metric}": value}
    improved = is_improvement(metric, value, member.best_score)
    if improved:
        member.best_score, member.best_step = value, stop
    member.history.append(record)
    if member.stopper is not None and member.stopper.observe(improved):
        member.stopped_early = member.stopped = True
    if stop == sched.total_steps:
        member.stopped = True
    snap = _snapshot(member, in_loop=stop in sched.in_loop_evals)
    if improved:
        member.best = snap
    member.last = snap


def score(member: Member, outputs: Tensor, targets: Tensor) -> dict[str, float]:
    """``Trainer.evaluate``'s numbers from precomputed outputs: the same batches and sums."""
    scores = Scores(member.loss, member.metric)
    for start, stop in batch_ranges(len(targets), member.config.eval_batch_size):
        scores.add(outputs[start:stop], targets[start:stop])
    return scores.result()


def _snapshot(member: Member, in_loop: bool) -> Snapshot:
    return Snapshot(
        params=member.params.clone(), exp_avg=member.exp_avg.clone(),
        exp_avg_sq=member.exp_avg_sq.clone(), step=member.done, in_loop=in_loop,
        best_score=member.best_score, best_step=member.best_step,
        history=[dict(r) for r in member.history],
        bad_evaluations=0 if member.stopper is None else member.stopper.bad_evaluations,
        stopped_early=member.stopped_early, seconds=member.seconds)


def _fail(member: Member, step0: int, value: float) -> None:
    """The trainer's message for a non-finite loss at (0-based) step ``step0``; with a
    finite ``value``, that step's update made the parameters non-finite."""
    member.stopped = True
    nb = member.schedule.batches_per_epoch
    kept = checkpoint_kept(out_path(member.job), None if member.last is None
                           else member.last.step)
    label = member.job.name or f"job {member.index}"
    member.error = NonFiniteError(
        f"{label}: {nonfinite_message(value, step0 + 1, step0 // nb + 1, kept)}", step=step0 + 1)


# ---------------------------------------------------------------------- outputs
def _result(impl: Any, group: Group, i: int, member: Member) -> FitResult:
    """The trainer's fit result; the test split scored as ``Trainer.evaluate`` scores it,
    on the best parameters (``restore_best``) or the last."""
    cfg = member.config
    final = member.last
    assert final is not None
    test = None
    if member.test is not None:
        chosen = member.best if cfg.restore_best and member.best is not None else final
        outputs = impl.logits(group, i, kernel_inputs(member.test, member.shape),
                              params=chosen.params)
        test = score(member, outputs, member.test.targets)
    return FitResult(
        metric=member.metric, best_dev_metric=member.best_score, best_step=member.best_step,
        steps=final.step, epochs=final.step // member.schedule.batches_per_epoch,
        seconds=round(member.seconds, 3), stopped_early=member.stopped_early,
        resumed_from_step=None, test=test, history=list(member.history))


def _write_outputs(member: Member) -> None:
    """``metrics.csv``, ``best.pt`` and ``last.pt`` as the trainer leaves them."""
    path = out_path(member.job)
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    names = columns(member.metric)
    write_csv(path / "metrics.csv", names,
              [{key: csv_value(r.get(key)) for key in names} for r in member.history])
    if member.best is not None:
        save_checkpoint(_checkpoint(member, member.best, "best"), path / BEST)
    if member.last is not None:
        save_checkpoint(_checkpoint(member, member.last, "last", finished=member.error is None),
                        path / LAST)


def _checkpoint(member: Member, snap: Snapshot, kind: str, finished: bool = False
                ) -> dict[str, Any]:
    """The checkpoint a trainer writes at ``snap``: a trainer attached to the job's run
    state there builds it (``Trainer.checkpoint_state``)."""
    cfg, sched = member.config, member.schedule
    nb, n = sched.batches_per_epoch, sched.n_train
    model = member.model
    model.load_state_dict(member.state_dict(snap.params))
    epoch, in_epoch = TrainState.position(snap.step, nb,
                                          in_loop=snap.in_loop and not finished)
    drawn = (snap.step - 1) // nb + 1 if snap.step > 0 else 0
    orders, generator = DataOrder.epochs(cfg.seed, cfg.shuffle, n, drawn)
    best = member.best
    state = TrainState(
        step=snap.step, epoch=epoch, batch_in_epoch=in_epoch, best_score=snap.best_score,
        best_step=snap.best_step, last_eval_step=snap.step if snap.history else 0,
        stopped_early=snap.stopped_early, finished=finished, seconds=snap.seconds,
        history=[dict(r) for r in snap.history], n_train=n, data_generator=generator,
        order=orders[-1] if orders else None,
        best_model=member.state_dict(best.params) if kind == "last" and best else None)
    meta = dict(member.job.meta)
    model_config = getattr(model, "config", None)
    if "model_config" not in meta and model_config is not None:
        meta["model_config"] = config_dict(model_config)
    stoppers = []
    if cfg.early_stop_patience is not None:
        stopper = EarlyStopping(cfg.early_stop_patience)
        stopper.bad_evaluations = snap.bad_evaluations
        stoppers.append(stopper)
    trainer = Trainer(cfg)
    trainer.attach(model, _optimizer(member, snap), state, metric=member.metric, meta=meta,
                   callbacks=stoppers)
    # The global generators as they stood when this job's model was built (the trainer
    # draws nothing from them while training), not as they stand in this thread now.
    return {**trainer.checkpoint_state(kind), "rng": member.rng}


def _optimizer(member: Member, snap: Snapshot) -> torch.optim.Optimizer:
    """A torch optimiser over the model holding the snapshot's optimiser state."""
    cfg = member.config
    optimizer = make_optimizer(cfg, member.model)
    if snap.step == 0:
        return optimizer
    named = dict(member.model.named_parameters())
    first = unflatten(member.shape, snap.exp_avg)
    second = unflatten(member.shape, snap.exp_avg_sq)
    for name, key in member.keys.items():
        param = named[key]
        if cfg.optimizer == "adam":
            optimizer.state[param] = {"step": torch.tensor(float(snap.step)),
                                      "exp_avg": first[name], "exp_avg_sq": second[name]}
        elif cfg.momentum != 0:
            optimizer.state[param] = {"momentum_buffer": first[name]}
    return optimizer
