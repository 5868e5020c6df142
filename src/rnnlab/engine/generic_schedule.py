"""The trainer's schedule run for all copies of a lock-step group at once.

Step by step this is :meth:`rnnlab.train.Trainer.fit` (see its determinism contract):
each copy draws its own epoch order from a generator seeded with its seed, every step
is one optimiser step for every copy, dev is scored every ``eval_every`` steps and at
the end, the best dev parameters are kept and restored, and the test split is scored
with them (and, for a copy with an ``out_dir``, written to ``best.pt`` and ``last.pt``).
A copy that stops early keeps its results as of that step; its slice keeps
computing with the others (copies never interact) and is then thrown away.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rnnlab.engine.stacked_optim import make_stacked_optimizer
from rnnlab.errors import NonFiniteError
from rnnlab.train.data import batch_ranges, num_batches
from rnnlab.train.trainer import FitResult, compute_loss, metric_sum_count

if TYPE_CHECKING:
    from rnnlab.engine.generic import _Group, _Stacked


@dataclass
class _CopyState:
    """One copy's bookkeeping, as :class:`rnnlab.train.trainer.TrainState` keeps it."""

    best_score: float | None = None
    best_step: int | None = None
    best_params: dict[str, Tensor] | None = None
    bad_evaluations: int = 0
    stopped: dict[str, Any] | None = None  # steps, epochs and parameters when it stopped
    history: list[dict[str, Any]] = field(default_factory=list)


def run_schedule(group: _Group) -> list[FitResult]:
    cfg, copies = group.config, group.copies
    size = len(copies)
    n = group.train.n
    nb = num_batches(n, cfg.batch_size)
    total = cfg.epochs * nb if cfg.max_steps is None else min(cfg.epochs * nb, cfg.max_steps)
    eval_every = cfg.eval_every or nb
    optimizer = make_stacked_optimizer(list(group.params.values()), cfg.optimizer,
                                       [c.lr for c in copies],
                                       [c.weight_decay for c in copies], cfg.momentum)
    generators = [torch.Generator().manual_seed(c.seed) for c in copies]
    states = [_CopyState() for _ in copies]
    step = epoch = batch_in_epoch = last_eval = 0
    loss_sum, loss_count = torch.zeros(size, dtype=torch.float64), 0
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    try:
        while step < total and not all(s.stopped for s in states):
            orders = [torch.randperm(n, generator=g) if cfg.shuffle else torch.arange(n)
                      for g in generators]
            for start, stop in batch_ranges(n, cfg.batch_size):
                batch = group._batch(group.train, [o[start:stop] for o in orders])
                values = _train_step(group, optimizer, batch, states, step)
                step, batch_in_epoch = step + 1, batch_in_epoch + 1
                loss_sum, loss_count = loss_sum + values, loss_count + 1
                if step % eval_every == 0:
                    _evaluate(group, states, step, epoch, batch_in_epoch, loss_sum / loss_count)
                    last_eval, loss_sum, loss_count = step, torch.zeros_like(loss_sum), 0
                    _stop_early(group, states, step, epoch, batch_in_epoch, nb)
                if step >= total or all(s.stopped for s in states):
                    break
            if batch_in_epoch >= nb:
                epoch, batch_in_epoch = epoch + 1, 0
        if last_eval != step:
            pending = loss_sum / loss_count if loss_count else None
            _evaluate(group, states, step, epoch, batch_in_epoch, pending)
    finally:
        torch.set_num_threads(threads)
    seconds = round((time.perf_counter() - started) / size, 3)  # the group's time, shared
    return _finish(group, states, step, epoch, seconds, generators)


def _train_step(group: _Group, optimizer: Any, batch: _Stacked,
                states: list[_CopyState], step: int) -> Tensor:
    from rnnlab.engine.generic import clip_per_copy

    cfg = group.config
    group.base.train()
    optimizer.zero_grad(set_to_none=True)
    losses = group._losses(group.forward(group.params, batch.inputs, batch.lengths), batch)
    values = losses.detach().double()
    live = torch.tensor([s.stopped is None for s in states])
    if cfg.stop_on_nonfinite and not bool(torch.isfinite(values[live]).all()):
        bad = next(m for m in range(len(states)) if live[m] and not math.isfinite(values[m]))
        raise NonFiniteError(f"loss of the copy with seed {group.copies[bad].seed} became "
                             f"{values[bad].item()} at step {step + 1}; try a lower learning "
                             "rate or gradient clipping (clip_norm)", step=step + 1)
    losses.sum().backward()
    clip_per_copy([p.grad for p in group.params.values()], cfg)
    optimizer.step()
    if cfg.reduction == "sum":
        counts = [_terms(group, batch, m) for m in range(len(states))]
        values = values / torch.tensor(counts, dtype=values.dtype)
    return values


def _terms(group: _Group, batch: _Stacked, m: int) -> int:
    """How many loss terms copy ``m``'s batch has (the trainer divides a summed loss by it)."""
    targets = batch.targets[m]
    if group.kind == "cross_entropy":
        valid = targets != -100
        if targets.dim() >= 2 and batch.lengths is not None:
            steps = torch.arange(targets.shape[1]).unsqueeze(0)
            valid = valid & (steps < batch.lengths[m].unsqueeze(1))
        return int(valid.sum())
    return int(targets.numel())


@torch.no_grad()
def evaluate_copies(group: _Group, data: _Stacked) -> list[dict[str, float]]:
    """``{"loss", metric}`` per copy, batch by batch exactly as ``Trainer.evaluate``."""
    cfg, size = group.config, len(group.copies)
    was_training = group.base.training
    group.base.eval()
    sums = [[0.0, 0, 0.0, 0] for _ in range(size)]
    try:
        for start, stop in batch_ranges(data.n, cfg.eval_batch_size):
            lengths = None if data.lengths is None else data.lengths[:, start:stop]
            output = group.forward(group.params, data.inputs[:, start:stop], lengths)
            for m in range(size):
                lens = None if lengths is None else lengths[m]
                targets = data.targets[m, start:stop]
                loss, count = compute_loss(output[m], targets, lens, group.kind, "sum")
                value, terms = metric_sum_count(output[m], targets, lens, group.metric)
                acc = sums[m]
                acc[0], acc[1] = acc[0] + float(loss), acc[1] + count
                acc[2], acc[3] = acc[2] + value, acc[3] + terms
    finally:
        group.base.train(was_training)
    return [{"loss": a[0] / max(a[1], 1), group.metric: a[2] / max(a[3], 1)} for a in sums]


def _evaluate(group: _Group, states: list[_CopyState], step: int, epoch: int,
              batch_in_epoch: int, train_loss: Tensor | None) -> None:
    scores = None if group.dev is None else evaluate_copies(group, group.dev)
    metric = group.metric
    for m, state in enumerate(states):
        if state.stopped is not None:
            continue
        record: dict[str, Any] = {
            "step": step, "epoch": epoch + (1 if batch_in_epoch else 0),
            "train_loss": None if train_loss is None else float(train_loss[m]),
            "dev_loss": None, f"dev_{metric}": None}
        improved = False
        if scores is not None:
            score = scores[m][metric]
            record["dev_loss"], record[f"dev_{metric}"] = scores[m]["loss"], score
            improved = math.isfinite(score) and (
                state.best_score is None
                or (score > state.best_score if metric == "accuracy" else score < state.best_score))
            if improved:
                state.best_score, state.best_step = score, step
                state.best_params = {k: v[m].detach().clone() for k, v in group.params.items()}
            state.bad_evaluations = 0 if improved else state.bad_evaluations + 1
        state.history.append(record)


def _stop_early(group: _Group, states: list[_CopyState], step: int, epoch: int,
                batch_in_epoch: int, nb: int) -> None:
    patience = group.config.early_stop_patience
    if patience is None or group.dev is None:
        return
    for m, state in enumerate(states):
        if state.stopped is None and state.bad_evaluations >= patience:
            epochs = epoch + 1 if batch_in_epoch >= nb else epoch
            state.stopped = {"steps": step, "epochs": epochs,
                             "params": {k: v[m].detach().clone()
                                        for k, v in group.params.items()}}


def _finish(group: _Group, states: list[_CopyState], step: int, epoch: int,
            seconds: float, generators: list[torch.Generator]) -> list[FitResult]:
    from rnnlab.engine.generic_checkpoint import save_copy_checkpoints

    cfg = group.config
    for m, (state, model) in enumerate(zip(states, group.models, strict=True)):
        final = (state.stopped["params"] if state.stopped is not None
                 else {k: v[m].detach().clone() for k, v in group.params.items()})
        copy = group.copies[m]
        if copy.out_dir is not None:
            stopped = state.stopped or {}
            save_copy_checkpoints(
                copy.out_dir, model, cfg.replace(seed=copy.seed, lr=copy.lr,
                                                 weight_decay=copy.weight_decay),
                metric=group.metric, meta=copy.meta, n_train=group.train.n,
                best=state.best_params, last=final, generator=generators[m],
                run={"step": stopped.get("steps", step), "epoch": stopped.get("epochs", epoch),
                     "best_score": state.best_score, "best_step": state.best_step,
                     "stopped_early": state.stopped is not None, "seconds": seconds,
                     "history": state.history})
        if cfg.restore_best and state.best_params is not None:
            final = state.best_params
        with torch.no_grad():
            for name, value in final.items():
                model.get_parameter(name).copy_(value)
                group.params[name].data[m] = value
    tests = None if group.test is None else evaluate_copies(group, group.test)
    return [FitResult(
        metric=group.metric, best_dev_metric=state.best_score, best_step=state.best_step,
        steps=state.stopped["steps"] if state.stopped else step,
        epochs=state.stopped["epochs"] if state.stopped else epoch,
        seconds=seconds, stopped_early=state.stopped is not None, resumed_from_step=None,
        test=None if tests is None else tests[m], history=state.history)
        for m, state in enumerate(states)]
