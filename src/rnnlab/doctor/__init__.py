"""The RNN doctor: find why a recurrent network does not learn.

Three ways in, the same checks behind each:

- ``rnnlab doctor SCRIPT [ARGS...]`` / :func:`run_script`: run someone's unmodified
  training script for a bounded number of steps under observation;
- :func:`watch` (or :class:`Doctor`): a context manager around your own loop;
- :func:`check`: one model, one batch, one loss function.

The checks: a hidden state carried across iterations (and whether that is deliberate
truncated BPTT over one stream or a leak between sequences), batch and time axes mixed,
a model that ignores the past, vanishing or exploding gradients through time and
non-finite losses. Each finding carries its numbers, the line, and the fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from rnnlab.doctor.diagnose import diagnose
from rnnlab.doctor.findings import Finding, Location, Report
from rnnlab.doctor.probes import primary
from rnnlab.doctor.records import BudgetSpent, RootCall
from rnnlab.doctor.report_files import write
from rnnlab.doctor.runner import run_script
from rnnlab.doctor.watcher import Watcher

__all__ = ["Doctor", "Finding", "Location", "Report", "check", "run_script", "watch"]


def check(model: nn.Module, batch: Any, loss_fn: Callable[..., Tensor] | None = None, *,
          batch_dim: int = 0, out: str | os.PathLike | None = None) -> Report:
    """Diagnose ``model`` on one batch: axes, use of the past, gradients through time.

    Args:
        model: any module whose forward takes the sequences (and returns the
            prediction first, if it returns a tuple).
        batch: ``(inputs, targets)`` or just ``inputs``; ``inputs`` is ``(N, L, H_in)``
            features or ``(N, L)`` tokens with the sequences on axis ``batch_dim``.
        loss_fn: ``loss_fn(prediction, targets)``; needed for the gradient-through-time
            and memoryless-baseline checks.
        batch_dim: the axis of ``inputs`` that holds the sequences. The default 0 is
            what rnnlab tasks and ``DataLoader`` give; the doctor cannot guess it from
            the model, because a model that runs along the wrong axis computes exactly
            what a correct model of the other layout computes.
        out: if given, a folder for ``findings.json`` and the plots.

    The parameters' ``.grad`` are left as they were.
    """
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, targets = batch
    else:
        inputs, targets = batch, None
    saved = {p: (None if p.grad is None else p.grad.clone()) for p in model.parameters()}
    mode = model.training
    model.train()
    watcher = Watcher(observe=1, max_steps=None)
    watcher.observe_every = 1
    try:
        with watcher:
            output = model(inputs)
            if loss_fn is not None and targets is not None:
                loss = loss_fn(output, targets)
                watcher.obs.last_loss_call = (primary(output).detach(), targets.detach())
                loss.backward()
                watcher.obs.grad_norms = {
                    name: [(0, float(p.grad.detach().double().norm()))]
                    for name, p in model.named_parameters() if p.grad is not None}
    finally:
        model.train(mode)
        for p, grad in saved.items():
            p.grad = grad
    root = watcher.obs.root or RootCall(model, (inputs,), {}, model, None, True, 0, [])
    watcher.obs.step_started = True  # one backward pass, no optimizer: zero steps
    report = diagnose(watcher.obs, type(model).__name__, batch_dim=batch_dim, root=root,
                      stopped="one batch, one backward pass")
    report.steps = 0
    if out is not None:
        write(report, out)
    return report


class Doctor:
    """A context manager that watches your own training loop.

    ::

        with rnnlab.doctor.watch(max_steps=100) as doctor:
            for x, y in loader:
                ...
        print(doctor.report.format())

    When ``max_steps`` or ``max_seconds`` is spent the loop is stopped (the exception
    that stops it is swallowed by the ``with``). Lines are reported in the file that
    opened the ``with``.
    """

    def __init__(self, max_steps: int | None = None, max_seconds: float | None = None,
                 out: str | os.PathLike | None = None, files: list[str] | None = None) -> None:
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.out = out
        self.files = files
        self.report: Report | None = None
        self._watcher: Watcher | None = None

    def __enter__(self) -> Doctor:
        files = self.files or [sys._getframe(1).f_code.co_filename]
        self._watcher = Watcher(files, max_steps=self.max_steps, max_seconds=self.max_seconds)
        self._watcher.install()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        watcher = self._watcher
        assert watcher is not None
        watcher.remove()
        stopped = watcher.stopped if exc_type is BudgetSpent else "the loop finished"
        self.report = diagnose(watcher.obs, "training loop", stopped=stopped,
                               budget_stopped=exc_type is BudgetSpent)
        if self.out is not None:
            write(self.report, self.out)
        return exc_type is BudgetSpent


def watch(max_steps: int | None = None, max_seconds: float | None = None,
          out: str | os.PathLike | None = None) -> Doctor:
    """A :class:`Doctor` around your own loop (see there)."""
    return Doctor(max_steps=max_steps, max_seconds=max_seconds, out=out)
