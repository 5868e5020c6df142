"""One group of memory runs on the generic lock-step path (:mod:`rnnlab.engine.generic`).

A group is one model, task and length: its seeds and hyper-parameter settings train
together (``vmap``) or one by one (``loop``), as :func:`~rnnlab.engine.generic.fit_many`
decides; the note it gives is printed as one line. Each run's curve goes to
``runs/<run_id>/metrics.csv`` with a ``dev_score`` column (the task's score), so the
report draws it like a kernel run's. A non-finite loss fails the whole lock-step group,
so the group is then trained again copy by copy and only the runs that really fail are
recorded as failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rnnlab.errors import NonFiniteError
from rnnlab.experiments.grid import RunSpec
from rnnlab.experiments.results import RunResult


def _jobs(specs: Sequence[RunSpec]) -> tuple[Any, list[tuple]]:
    from rnnlab.engine.generic import Copy
    from rnnlab.experiments.models import build_for, task_for
    from rnnlab.experiments.runners import train_config_for

    task = None
    jobs = []
    for spec in specs:
        task = task_for(spec)
        splits = task.splits(seed=spec.seed)
        steps = splits["train"].inputs.shape[1]
        key = (spec.cell, spec.task, spec.length, spec.hidden_size)
        jobs.append((key, _builder(spec, task, steps, build_for), train_config_for(spec),
                     Copy(spec.seed, splits["train"], splits["dev"], splits["test"])))
    return task, jobs


def _builder(spec: RunSpec, task: Any, steps: int, build_for: Any) -> Any:
    return lambda: build_for(spec, task, steps)


def _write_curve(run_dir: Path, history: list[dict[str, Any]], task: Any) -> None:
    from rnnlab.io import write_csv

    metric = f"dev_{task.metric}"
    rows = [{"step": h["step"], "epoch": h.get("epoch"), "train_loss": h.get("train_loss"),
             "dev_loss": h.get("dev_loss"), metric: h.get(metric),
             "dev_score": None if h.get(metric) is None else task.score(h[metric])}
            for h in history]
    fields = ["step", "epoch", "train_loss", "dev_loss", metric, "dev_score"]
    write_csv(run_dir / "metrics.csv", fields,
              [{k: "" if v is None else v for k, v in r.items()} for r in rows])


def _result(spec: RunSpec, fit: Any, task: Any, runs_dir: Path, engine: str, path: str,
            seconds: float) -> RunResult:
    from rnnlab.experiments.runners import write_spec

    run_dir = runs_dir / spec.run_id
    _write_curve(run_dir, fit.history, task)
    write_spec(run_dir, spec)
    return RunResult(spec, best_dev_accuracy=task.score(float(fit.best_score)),
                     test_accuracy=task.score(fit.test), steps=int(fit.steps),
                     seconds=seconds, engine=engine, path=path)


def train_group(specs: Sequence[RunSpec], runs_dir: Path, path: str) -> Iterator[RunResult]:
    """Train one (model, task, length) group; yield a result per spec."""
    from rnnlab.engine.generic import fit_many

    engine = "loop" if path == "loop" else "generic"
    task, jobs = _jobs(specs)
    start = time.perf_counter()
    try:
        results, _, notes = fit_many(jobs, path=path)
    except NonFiniteError:
        yield from _one_by_one(specs, jobs, task, runs_dir, engine)
        return
    seconds = (time.perf_counter() - start) / len(specs)
    # A note reads "<key> xN: vmap (...)" or "<key> xN: loop (timed: vmap ... )".
    taken = "vmap" if any(f" x{len(specs)}: vmap" in n for n in notes) else "loop"
    s = specs[0]
    for note in notes:
        print(f"generic path, {s.cell} on {s.task} {s.length}: {note}", file=sys.stderr)
    for spec, fit in zip(specs, results, strict=True):
        yield _result(spec, fit, task, runs_dir, engine, taken, seconds)


def _one_by_one(specs: Sequence[RunSpec], jobs: list[tuple], task: Any, runs_dir: Path,
                engine: str) -> Iterator[RunResult]:
    from rnnlab.engine.generic import fit_many
    from rnnlab.experiments.runners import write_spec

    s = specs[0]
    print(f"generic path, {s.cell} on {s.task} {s.length}: a copy's loss became non-finite; "
          "training the group's runs one by one", file=sys.stderr)
    for spec, job in zip(specs, jobs, strict=True):
        start = time.perf_counter()
        try:
            (fit,), _, _ = fit_many([job], path="loop")
        except NonFiniteError as err:
            write_spec(runs_dir / spec.run_id, spec)
            yield RunResult.failed(spec, str(err), engine, steps=(err.step or 1) - 1,
                                   seconds=time.perf_counter() - start, path="loop")
            continue
        yield _result(spec, fit, task, runs_dir, engine, "loop", time.perf_counter() - start)
