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

The C kernel trains built-in cells on every task of the suite (token or feature
inputs; classify, tag and regress-last heads). Every other run (a user's cell or
model, or a task the engine cannot train) goes through :func:`generic_runner`:
:func:`rnnlab.engine.generic.fit_many` with ``path="auto"`` (vmap or loop, measured)
under ``fast``, the trainer under ``loop``. Each result
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


def builtin(spec: RunSpec) -> bool:
    """Whether the spec's model is a built-in cell (trained by the engine or the trainer,
    with checkpoints), not a user's cell or factory (the generic path)."""
    return spec.model_kind == ""


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
            "task_params": {f.name: getattr(task, f.name) for f in dataclasses.fields(task)
                            if f.init},
            "model_config": dataclasses.asdict(model_config),
            "seed": spec.seed, "data_seed": spec.seed, "memory_spec": spec.asdict()}


def write_spec(run_dir: Path, spec: RunSpec) -> None:
    """``spec.json``: the run's hash and everything it was computed from."""
    from rnnlab.io import atomic_write_json

    atomic_write_json(run_dir / "spec.json", {"config_hash": spec.config_hash, **spec.asdict()})


def _job(spec: RunSpec, runs_dir: Path) -> tuple[Any, Any]:
    """The engine's job for a spec of a built-in cell, and the spec's task."""
    from rnnlab.engine import Job

    task = task_for(spec)
    splits = task.splits(seed=spec.seed)
    model_config = model_config_for(spec, task)
    return Job(splits["train"], splits["dev"], model_config, train_config_for(spec),
               test=splits["test"], out_dir=runs_dir / spec.run_id,
               meta=run_meta(spec, task, model_config), name=spec.run_id), task


def _trained(spec: RunSpec, task: Any, fit: Any, engine: str, path: str,
             seconds: float) -> RunResult:
    """The result row of a finished run: dev and test on the task's score scale."""
    return RunResult(spec, best_dev_score=task.score(float(fit.best_score)),
                     test_score=task.score(fit.test), steps=int(fit.steps),
                     seconds=seconds, engine=engine, path=path)


def loop_runner(specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[RunResult]:
    """Train each spec alone with the ordinary trainer (the reference engine)."""
    from rnnlab.train import Trainer, seeded_model

    yield from generic_runner([s for s in specs if not builtin(s)], runs_dir, path="loop")
    for spec in (s for s in specs if builtin(s)):
        start = time.perf_counter()
        job, task = _job(spec, runs_dir)
        model = seeded_model(job.model_config, spec.seed)
        run_dir = runs_dir / spec.run_id
        # A fresh start: a folder left by a killed run is overwritten, not resumed,
        # so the result never depends on where the earlier attempt stopped.
        try:
            fit = Trainer(job.train_config).fit(model, job.train, job.dev, test=job.test,
                                                out_dir=run_dir, meta=job.meta)
        except NonFiniteError as err:
            write_spec(run_dir, spec)
            yield RunResult.failed(spec, str(err), "loop", steps=(err.step or 1) - 1,
                                   seconds=time.perf_counter() - start)
            continue
        write_spec(run_dir, spec)
        yield _trained(spec, task, fit, "loop", "trainer", time.perf_counter() - start)


def fast_runner(specs: Sequence[RunSpec], runs_dir: Path) -> Iterator[RunResult]:
    """Train all specs at once with the lock-step engine (:mod:`rnnlab.engine`).

    Built-in cells train on the engine (the C kernel: every task of the suite; its
    torch fallback: token classification only). The engine trains each job exactly as
    the trainer would alone and writes the trainer's files into the job's folder, so
    only ``spec.json`` is added here. Everything else takes the generic path.
    """
    from rnnlab.engine import describe, iter_population
    from rnnlab.engine.jobs import check_supported

    # Only built-in cells need the engine (describing it may build and time the kernel).
    backend = str(describe().get("backend") or "") if any(map(builtin, specs)) else ""
    chosen, jobs, tasks, others = [], [], [], []
    for spec in specs:
        job, task = _job(spec, runs_dir) if builtin(spec) and backend else (None, None)
        if job is None or not _engine_trains(job, backend, check_supported):
            others.append(spec)
            continue
        chosen.append(spec)
        jobs.append(job)
        tasks.append(task)
    yield from generic_runner(others, runs_dir, path="auto")
    if not chosen:
        return
    names = sorted({s.task for s in chosen})
    print(f"C-kernel engine ({backend}): {len(chosen)} run(s) of built-in cells on "
          f"{', '.join(names)}", file=sys.stderr)
    for index, fit in iter_population(jobs):
        spec = chosen[index]
        write_spec(runs_dir / spec.run_id, spec)
        if isinstance(fit, NonFiniteError):
            yield RunResult.failed(spec, str(fit), "fast", steps=(fit.step or 1) - 1,
                                   path=backend)
            continue
        yield _trained(spec, tasks[index], fit, "fast", backend, float(fit.seconds))


def _engine_trains(job: Any, backend: str, check: Callable[[Any, int], Any]) -> bool:
    """Whether the engine's ``backend`` trains this job (else it takes the generic path)."""
    try:
        shape = check(job, 0)
    except RnnlabError:
        return False
    if backend == "torch":
        from rnnlab.engine.torch_backend import supports

        return supports(shape)
    return True


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
