"""How grid points get trained: one function per engine, all with one signature.

A runner takes the specs still to train and the folder for run directories,
and yields a :class:`~rnnlab.experiments.results.RunResult` as each run
finishes; a run whose loss or parameters became non-finite
(:class:`~rnnlab.errors.NonFiniteError`) yields a ``failed`` result with the reason,
and the others go on. Every runner leaves, per run, ``runs/<run_id>/metrics.csv`` (the
curves of the report) and the run's configuration, and derives everything from
the spec alone, so which engine trained a run never changes its result beyond
float tolerance.

* ``fast`` (the default): the lock-step engine, :mod:`rnnlab.engine`, which trains
  the whole list at once, each model exactly as the trainer would.
* ``loop``: the ordinary :class:`rnnlab.train.Trainer`, one model at a time; the
  reference the engine is checked against.

The C kernel trains built-in cells on token classification (DigitSum). Every other
run (a user's cell or model, or another task of the suite) goes through
:func:`generic_runner`: :func:`rnnlab.engine.generic.fit_many` with ``path="auto"``
(vmap or loop, measured) under ``fast``, the trainer under ``loop``. Each result
records its ``engine`` and the ``path`` that actually ran (``kernel``/``torch`` for the
kernel's backend, ``vmap``/``loop`` for the generic path), and each group of the generic
path prints one line saying which path it took and why.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rnnlab.errors import NonFiniteError, RnnlabError
from rnnlab.experiments.grid import RunSpec
from rnnlab.experiments.results import RunResult


def task_for(spec: RunSpec):
    """The task of a spec (its value of the memory axis and split sizes)."""
    from rnnlab.experiments.models import task_for as build_task

    return build_task(spec)


def on_kernel(spec: RunSpec) -> bool:
    """Whether the C kernel can train this spec: a built-in cell on DigitSum."""
    from rnnlab.experiments.grid import TASK

    return spec.model_kind == "" and spec.task == TASK


def model_config_for(spec: RunSpec, task: Any):
    """The model of a spec: embedding -> cell -> linear head on the last state."""
    from rnnlab.models import model_config_for as shaped_for

    return shaped_for(task.spec, cell=spec.cell, hidden_size=spec.hidden_size,
                      embedding_dim=spec.embedding_dim, init=spec.init,
                      **dict(spec.model_extra))


def train_config_for(spec: RunSpec):
    """The trainer's configuration of a spec; quiet, because the experiment shows
    its own progress over runs."""
    from rnnlab.train import TrainConfig

    return TrainConfig(**{
        **dict(spec.train_extra), "epochs": spec.epochs, "batch_size": spec.batch_size,
        "lr": spec.lr, "optimizer": spec.optimizer, "clip_norm": spec.clip,
        "eval_every": spec.eval_every, "shuffle": spec.shuffle, "seed": spec.seed,
        "weight_decay": spec.weight_decay, "progress": "off"})


def run_meta(spec: RunSpec, task: Any, model_config: Any) -> dict[str, Any]:
    """What a checkpoint needs to rebuild the run, in the keys ``rnnlab train`` uses,
    so ``rnnlab evaluate`` and ``rnnlab predict`` work on a memory run's folder."""
    return {"task": task.name,
            "task_params": {"length": spec.length, "k_train": spec.k_train,
                            "k_dev": spec.k_dev, "k_test": spec.k_test},
            "model_config": dataclasses.asdict(model_config),
            "seed": spec.seed, "data_seed": spec.seed, "memory_spec": spec.asdict()}


def write_spec(run_dir: Path, spec: RunSpec) -> None:
    """``spec.json``: the run's hash and everything it was computed from."""
    from rnnlab.io import atomic_write_json

    atomic_write_json(run_dir / "spec.json", {"config_hash": spec.config_hash, **spec.asdict()})


def loop_runner(specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[RunResult]:
    """Train each spec alone with the ordinary trainer (the reference engine)."""
    from rnnlab.train import Trainer, seeded_model

    yield from generic_runner([s for s in specs if not on_kernel(s)], runs_dir, path="loop")
    for spec in (s for s in specs if on_kernel(s)):
        task = task_for(spec)
        splits = task.splits(seed=spec.seed)
        start = time.perf_counter()
        model_config = model_config_for(spec, task)
        model = seeded_model(model_config, spec.seed)
        run_dir = runs_dir / spec.run_id
        # A fresh start: a folder left by a killed run is overwritten, not resumed,
        # so the result never depends on where the earlier attempt stopped.
        try:
            fit = Trainer(train_config_for(spec)).fit(
                model, splits["train"], splits["dev"], test=splits["test"], out_dir=run_dir,
                meta=run_meta(spec, task, model_config))
        except NonFiniteError as err:
            write_spec(run_dir, spec)
            yield RunResult.failed(spec, str(err), "loop", steps=(err.step or 1) - 1,
                                   seconds=time.perf_counter() - start)
            continue
        seconds = time.perf_counter() - start
        write_spec(run_dir, spec)
        yield RunResult(spec, best_dev_accuracy=float(fit.best_score),
                        test_accuracy=float(fit.test["accuracy"]), steps=int(fit.steps),
                        seconds=seconds, engine="loop", path="trainer")


def fast_runner(specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[RunResult]:
    """Train all specs at once with the lock-step engine (:mod:`rnnlab.engine`).

    The engine trains each job exactly as the trainer would alone and writes the
    trainer's files into the job's folder, so only ``spec.json`` is added here.
    """
    from rnnlab.engine import Job, describe, iter_population

    yield from generic_runner([s for s in specs if not on_kernel(s)], runs_dir, path="auto")
    specs = [s for s in specs if on_kernel(s)]
    if not specs:
        return
    backend = str(describe().get("backend") or "")
    print(f"C-kernel engine ({backend or 'no backend'}): {len(specs)} run(s) of built-in "
          "cells on digitsum", file=sys.stderr)
    jobs = []
    for spec in specs:
        task = task_for(spec)
        splits = task.splits(seed=spec.seed)
        model_config = model_config_for(spec, task)
        jobs.append(Job(splits["train"], splits["dev"], model_config, train_config_for(spec),
                        test=splits["test"], out_dir=runs_dir / spec.run_id,
                        meta=run_meta(spec, task, model_config), name=spec.run_id))
    for index, fit in iter_population(jobs):
        spec = specs[index]
        write_spec(runs_dir / spec.run_id, spec)
        if isinstance(fit, NonFiniteError):
            yield RunResult.failed(spec, str(fit), "fast", steps=(fit.step or 1) - 1,
                                   path=backend)
            continue
        yield RunResult(spec, best_dev_accuracy=float(fit.best_score),
                        test_accuracy=float(fit.test["accuracy"]), steps=int(fit.steps),
                        seconds=float(fit.seconds), engine="fast", path=backend)


def generic_runner(specs: Sequence[RunSpec], runs_dir: Path, path: str = "auto"
                   ) -> Iterator[RunResult]:
    """Train specs the kernel cannot with :func:`rnnlab.engine.generic.fit_many`, one
    group per (model, task, length) so results arrive as each group finishes."""
    from rnnlab.experiments.generic_runs import train_groups

    yield from train_groups(specs, runs_dir, path)


ENGINES: dict[str, Callable[[Sequence[RunSpec], Path], Iterator[RunResult]]] = {
    "fast": fast_runner,
    "loop": loop_runner,
}


def get_runner(engine: str) -> Callable[[Sequence[RunSpec], Path], Iterator[RunResult]]:
    if engine not in ENGINES:
        raise RnnlabError(f"unknown engine {engine!r}; known engines: {', '.join(ENGINES)}")
    return ENGINES[engine]
