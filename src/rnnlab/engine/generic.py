"""The generic lock-step path: many copies of one architecture trained as one computation.

For any ``nn.Module`` (a user's model, or one the C kernel cannot train), copies
that differ only in seed and in data of the same shape are trained together:
their parameters are stacked along a new leading dimension, the forward pass is
``torch.func.vmap`` of ``functional_call`` over (parameters, batch), and one
backward pass of the summed per-copy losses gives every copy its own gradient (each
loss depends on its own slice only). Adam and SGD are elementwise, so one
``torch.optim`` optimiser over the stacked tensors *is* one optimiser state per copy;
clipping is done per copy (:func:`clip_per_copy`).

Each copy follows the trainer's determinism contract (``rnnlab.train.trainer``):
``seed_everything(seed)`` then ``build()``; its own data-order generator seeded with
its seed; one step per batch; dev evaluation every ``eval_every`` steps and at the
end; the best dev parameters restored; test scored with them. Loss and metric are
the trainer's own functions applied to each copy's output, so a copy ends where
the one-by-one :class:`~rnnlab.train.Trainer` ends, up to float rounding
(``tests/test_generic_lockstep.py`` checks it).

Grouping rule: copies train together only when their data have the same shapes
(number of examples, sequence length, features, targets, lengths or none) and the
same :class:`TrainConfig` apart from the seed, so every copy takes the same steps.
:func:`fit_many` groups jobs by that rule; anything else lands in another group.

Paths: ``"vmap"`` (the above), ``"loop"`` (the trainer, one copy after another) and
``"auto"``: ``vmap`` when the model can be vmapped (``nn.RNN/LSTM/GRU`` are swapped
for step-loop twins, :mod:`rnnlab.engine.twins`) *and* a timed training step on the
first batch says it is faster than the loop (:func:`choose_path`; a caller may time
once per architecture and pass the ``decision`` on); otherwise the loop. On a CPU the
loop often wins for models built on torch's fused LSTM (see docs/memory-suite.md),
which is why the choice is measured, not assumed. Each group's choice is one line
in :attr:`GroupResult.note`. A copy with an ``out_dir`` gets ``best.pt`` and ``last.pt``
in the trainer's format, written once at the end (:mod:`rnnlab.engine.generic_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Hashable, Sequence
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from rnnlab.engine.twins import vmappable
from rnnlab.errors import RnnlabError, ensure
from rnnlab.seeding import seed_everything
from rnnlab.tasks.base import SplitData
from rnnlab.train import TrainConfig, Trainer
from rnnlab.train.data import as_split
from rnnlab.train.trainer import FitResult, compute_loss

PATHS = ("auto", "vmap", "loop")


@dataclass
class Copy:
    """One copy of a group: its seed (initialisation and data order), its data,
    optionally its own learning rate and weight decay (``None``: the group config's), and
    optionally a folder for its checkpoints, written as the trainer writes them."""

    seed: int
    train: Any
    dev: Any = None
    test: Any = None
    lr: float | None = None
    weight_decay: float | None = None
    out_dir: Path | None = None  # where best.pt and last.pt go (none when None)
    meta: dict[str, Any] | None = None  # the checkpoints' meta (how to rebuild the run)


@dataclass
class GroupResult:
    """What a group's training gives back: one result and one model per copy, in order."""

    results: list[FitResult]
    models: list[nn.Module]
    path: str  # "vmap" or "loop"
    note: str  # one line: which path and why


def shape_key(copy: Copy) -> tuple:
    """The data shapes that must agree for copies to share a group."""
    def shapes(split: SplitData | None) -> tuple:
        if split is None:
            return ()
        return (tuple(split.inputs.shape), split.inputs.dtype, tuple(split.targets.shape),
                split.targets.dtype, split.lengths is not None)
    return tuple(shapes(None if s is None else as_split(s)) for s in
                 (copy.train, copy.dev, copy.test))


def fit_lockstep(build: Callable[[], nn.Module], config: TrainConfig, copies: Sequence[Copy],
                 path: str = "auto", decision: tuple[str, str] | None = None) -> GroupResult:
    """Train ``len(copies)`` models built by ``build`` (after each copy's seeding) together.

    ``config.seed`` is ignored: each copy's seed is its own, and so may be its ``lr``
    and ``weight_decay`` (one group can hold a hyper-parameter grid). Raises
    :class:`RnnlabError` when the copies' data shapes differ (see the grouping rule).
    Under ``"auto"``, ``decision`` (from :func:`choose_path` on another group of the same
    architecture) replaces this group's own timing; vmap still falls back to the loop
    when this group cannot be vmapped.
    """
    ensure(path in PATHS, f"unknown path {path!r}; known paths: {', '.join(PATHS)}")
    copies = _prepared(config, copies)
    configs = [config.replace(seed=c.seed, lr=c.lr, weight_decay=c.weight_decay) for c in copies]
    models = _built(build, copies)
    if path == "loop" or len(copies) == 1:
        why = "asked for" if path == "loop" else "a single copy"
        return _loop(models, configs, copies, f"loop ({why})")
    if path == "auto" and decision is not None and decision[0] == "loop":
        return _loop(models, configs, copies, f"loop ({decision[1]})")
    group = _Group(models, config, copies)
    reason = group.vmap_problem()
    if reason is not None:
        if path == "vmap":
            raise RnnlabError(f"this model cannot be trained on the vmap path: {reason}")
        return _loop(models, configs, copies, f"loop (vmap impossible: {reason})")
    if path == "vmap":
        return GroupResult(group.fit(), models, "vmap", "vmap (asked for)")
    if decision is None:
        decision = group.decide()
        if decision[0] == "loop":
            return _loop(models, configs, copies, f"loop ({decision[1]})")
    return GroupResult(group.fit(), models, "vmap", f"vmap ({decision[1]})")


def choose_path(build: Callable[[], nn.Module], config: TrainConfig,
                copies: Sequence[Copy]) -> tuple[str, str]:
    """``("vmap" or "loop", why)`` for these copies, by a timed first step of each path.

    Timing costs a few steps of both paths, so a caller with many groups of one
    architecture (the memory experiment: one group per length) asks once, on one
    group, and passes the answer to :func:`fit_many` as ``decision``.
    """
    copies = _prepared(config, copies)
    if len(copies) == 1:
        return "loop", "a single copy"
    models = _built(build, copies)
    group = _Group(models, config, copies)
    reason = group.vmap_problem()
    return ("loop", f"vmap impossible: {reason}") if reason is not None else group.decide()


def fit_many(jobs: Sequence[tuple[Hashable, Callable[[], nn.Module], TrainConfig, Copy]],
             path: str = "auto", decision: tuple[str, str] | None = None
             ) -> tuple[list[FitResult], list[nn.Module], list[str]]:
    """Group ``(architecture key, build, config, copy)`` jobs and train each group.

    Jobs share a group when their keys are equal (the caller's promise that ``build``
    makes the same architecture, e.g. ``("mine", length)``), their configs are equal
    apart from the seed, learning rate and weight decay (each copy keeps its own), and
    their data shapes agree. Returns the results and models in job order and one note
    per group. ``decision``: see :func:`fit_lockstep`.
    """
    groups: dict[tuple, list[int]] = {}
    for index, (key, _, config, copy) in enumerate(jobs):
        shared = config.replace(seed=0, lr=1.0, weight_decay=0.0)
        groups.setdefault((key, shared, shape_key(copy)), []).append(index)
    results: list[Any] = [None] * len(jobs)
    models: list[Any] = [None] * len(jobs)
    notes = []
    for (key, _, _), members in groups.items():
        _, build, config, _ = jobs[members[0]]
        copies = [dataclasses.replace(jobs[i][3], lr=jobs[i][2].lr,
                                      weight_decay=jobs[i][2].weight_decay) for i in members]
        group = fit_lockstep(build, config, copies, path, decision)
        for slot, i in enumerate(members):
            results[i], models[i] = group.results[slot], group.models[slot]
        notes.append(f"{key!r} x{len(members)}: {group.note}")
    return results, models, notes


def _prepared(config: TrainConfig, copies: Sequence[Copy]) -> list[Copy]:
    """The copies with their splits checked and their own lr and weight decay filled in."""
    ensure(len(copies) >= 1, "fit_lockstep needs at least one copy")
    out = [dataclasses.replace(
        c, train=as_split(c.train, "train"), dev=None if c.dev is None else as_split(c.dev, "dev"),
        test=None if c.test is None else as_split(c.test, "test"),
        lr=config.lr if c.lr is None else c.lr,
        weight_decay=config.weight_decay if c.weight_decay is None else c.weight_decay)
        for c in copies]
    ensure(len({shape_key(c) for c in out}) == 1, "copies in one lock-step group must have data "
          "of the same shapes (examples, length, features, targets); group them with fit_many")
    return out


def _built(build: Callable[[], nn.Module], copies: list[Copy]) -> list[nn.Module]:
    """One model per copy, each built right after its own seeding (the trainer's contract)."""
    models = []
    for c in copies:
        seed_everything(c.seed)
        models.append(build())
    return models


def _loop(models: list[nn.Module], configs: list[TrainConfig], copies: list[Copy],
          note: str) -> GroupResult:
    from rnnlab.engine.generic_checkpoint import CheckpointsAtEnd

    results = [Trainer(cfg, [] if c.out_dir is None else [CheckpointsAtEnd(c.out_dir)])
               .fit(model, c.train, c.dev, c.test, meta=c.meta)
               for model, cfg, c in zip(models, configs, copies, strict=True)]
    return GroupResult(results, models, "loop", note)


def clip_per_copy(grads: list[Tensor], config: TrainConfig) -> None:
    """The trainer's clipping (value, per parameter, global norm) for each copy, in place.

    ``grads`` are stacked ``(M, ...)``; norms are taken over everything but dim 0, with
    the ``1e-6`` that ``torch.nn.utils.clip_grad_norm_`` adds.
    """
    def norms(g: Tensor) -> Tensor:
        return torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1)

    def scale(g: Tensor, factor: Tensor) -> None:
        g.mul_(factor.reshape((-1,) + (1,) * (g.dim() - 1)))

    if config.clip_value is not None:
        for g in grads:
            g.clamp_(-config.clip_value, config.clip_value)
    if config.clip_per_param is not None:
        for g in grads:
            scale(g, (config.clip_per_param / (norms(g) + 1e-6)).clamp(max=1.0))
    if config.clip_norm is not None:
        total = torch.linalg.vector_norm(torch.stack([norms(g) for g in grads]), dim=0)
        factor = (config.clip_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            scale(g, factor)


class _Group:
    """Stacked parameters, the vmapped forward and the trainer's schedule for all copies."""

    def __init__(self, models: list[nn.Module], config: TrainConfig, copies: list[Copy]) -> None:
        self.models, self.config, self.copies = models, config, copies
        self.base = vmappable(models[0])
        first = dict(models[0].named_parameters())
        for model in models[1:]:
            other = dict(model.named_parameters())
            ensure(list(other) == list(first) and all(
                other[n].shape == first[n].shape for n in first),
                "copies in one lock-step group must have the same parameters; build made "
                "models with different parameter names or shapes")
        self.params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
                       .requires_grad_() for n in first}
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models])
                        for n, _ in models[0].named_buffers()}
        self.train = _stack([c.train for c in copies])
        self.dev = None if copies[0].dev is None else _stack([c.dev for c in copies])
        self.test = None if copies[0].test is None else _stack([c.test for c in copies])
        real = copies[0].train.targets.is_floating_point()  # as the trainer reads "auto"
        self.kind = config.loss if config.loss != "auto" else ("mse" if real else "cross_entropy")
        ensure(self.kind != "cross_entropy" or not real,
              "loss 'cross_entropy' needs integer class targets, but the targets are real numbers")
        self.metric = config.metric if config.metric != "auto" else ("mse" if real else "accuracy")

    def forward(self, params: dict[str, Tensor], inputs: Tensor,
                lengths: Tensor | None) -> Tensor:
        def one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor,
                lens: Tensor | None) -> Tensor:
            out = (functional_call(self.base, (p, b), (x,)) if lens is None
                   else functional_call(self.base, (p, b), (x,), {"lengths": lens}))
            return out[0] if isinstance(out, tuple) else out
        return vmap(one, in_dims=(0, 0, 0, None if lengths is None else 0))(
            params, self.buffers, inputs, lengths)

    def vmap_problem(self) -> str | None:
        """Why this model cannot be vmapped (the first line of the error), or None."""
        batch = self._batch(self.train, [torch.arange(min(2, self.train.n))] * len(self.copies))
        before = {n: b.clone() for n, b in self.buffers.items()}
        try:
            self.base.train()
            out = self.forward(self.params, batch.inputs, batch.lengths)
            out.sum().backward()
            changed = any(not torch.equal(before[n], b) for n, b in self.buffers.items())
        except Exception as error:  # vmap's refusals are plain RuntimeErrors
            return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        finally:
            for p in self.params.values():
                p.grad = None
            for name, value in before.items():
                self.buffers[name].copy_(value)
        if changed:
            return "the model changes its buffers while training (e.g. BatchNorm statistics)"
        return None

    def decide(self) -> tuple[str, str]:
        """``(path, why)`` from one timed forward-backward of each path."""
        vmap_s, loop_s = self.time_step()
        timed = (f"timed: vmap {1e3 * vmap_s:.1f} ms/step for {len(self.copies)} copies, "
                 f"loop {1e3 * loop_s:.1f} ms")
        return ("vmap" if vmap_s < loop_s else "loop"), timed

    def time_step(self) -> tuple[float, float]:
        """Seconds of one whole training step (forward, backward, clipping, optimiser) on a
        first-size batch for all copies: vmap against the trainer's loop. Both run on
        throwaway copies of the parameters, so timing changes no copy's training."""
        from rnnlab.engine.stacked_optim import make_stacked_optimizer
        from rnnlab.train.optim import clip_gradients, make_optimizer

        cfg = self.config
        size = min(cfg.batch_size, self.train.n)
        batch = self._batch(self.train, [torch.arange(size)] * len(self.copies))
        params = {n: p.detach().clone().requires_grad_() for n, p in self.params.items()}
        stacked = make_stacked_optimizer(list(params.values()), cfg.optimizer,
                                         [c.lr for c in self.copies],
                                         [c.weight_decay for c in self.copies], cfg.momentum)
        models = [deepcopy(model) for model in self.models]
        optimizers = [make_optimizer(cfg, model) for model in models]

        def vmapped() -> None:
            stacked.zero_grad(set_to_none=True)
            loss = self._losses(self.forward(params, batch.inputs, batch.lengths), batch)
            loss.sum().backward()
            clip_per_copy([p.grad for p in params.values()], cfg)
            stacked.step()

        def looped() -> None:
            for m, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
                optimizer.zero_grad(set_to_none=True)
                x, lens = batch.inputs[m], None if batch.lengths is None else batch.lengths[m]
                out = model(x) if lens is None else model(x, lengths=lens)
                out = out[0] if isinstance(out, tuple) else out
                compute_loss(out, batch.targets[m], lens, self.kind, cfg.reduction)[0].backward()
                clip_gradients(model.parameters(), cfg)
                optimizer.step()

        was_training = self.base.training
        self.base.train()
        try:
            return _best_of(vmapped), _best_of(looped)
        finally:
            self.base.train(was_training)

    def _batch(self, data: _Stacked, index: list[Tensor]) -> _Stacked:
        rows = torch.stack(index)
        pick = torch.arange(len(index)).unsqueeze(1)
        lengths = None if data.lengths is None else data.lengths[pick, rows]
        return _Stacked(data.inputs[pick, rows], data.targets[pick, rows], lengths, rows.shape[1])

    def _losses(self, output: Tensor, batch: _Stacked) -> Tensor:
        """Each copy's loss ``(M,)``, as ``compute_loss`` gives it for that copy alone."""
        size, targets, reduction = len(self.copies), batch.targets, self.config.reduction
        if batch.lengths is not None:  # masking by lengths: the trainer's own code, per copy
            return torch.stack([compute_loss(output[m], targets[m], batch.lengths[m],
                                             self.kind, reduction)[0] for m in range(size)])
        if self.kind == "cross_entropy":  # -100 targets add 0 and are not counted
            terms = F.cross_entropy(output.reshape(-1, output.shape[-1]), targets.reshape(-1),
                                    reduction="none").reshape(size, -1)
            counts = (targets != -100).reshape(size, -1).sum(1)
        else:
            terms = (output - targets.to(output.dtype).reshape(output.shape)) ** 2
            terms = terms.reshape(size, -1)
            counts = torch.full((size,), terms.shape[1])
        total = terms.sum(1)
        return total if reduction == "sum" else total / counts

    def fit(self) -> list[FitResult]:
        from rnnlab.engine.generic_schedule import run_schedule

        return run_schedule(self)


@dataclass
class _Stacked:
    """The copies' splits stacked: ``inputs (M, N, ...)``, ``targets (M, N, ...)``."""

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None
    n: int


def _stack(splits: list[SplitData]) -> _Stacked:
    lengths = None if splits[0].lengths is None else torch.stack([s.lengths for s in splits])
    return _Stacked(torch.stack([s.inputs for s in splits]),
                    torch.stack([s.targets for s in splits]), lengths, len(splits[0]))


def _best_of(fn: Callable[[], None], repeats: int = 3) -> float:
    fn()  # warm-up: first calls allocate
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


__all__ = ["PATHS", "Copy", "GroupResult", "choose_path", "clip_per_copy", "fit_lockstep",
           "fit_many", "shape_key"]
