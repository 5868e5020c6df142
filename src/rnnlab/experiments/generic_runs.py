"""One group of memory runs on the generic lock-step path (:mod:`rnnlab.engine.generic`).

A group is one model, task and length: its seeds and hyper-parameter settings train
together (``vmap``) or one by one (``loop``), as :func:`~rnnlab.engine.generic.fit_many`
decides (timed once per model and task, :func:`train_groups`); the note it gives is
printed as one line. Groups train side by side in worker processes
(:mod:`rnnlab.experiments.generic_pool`). Each run's curve goes to
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


def _jobs(specs: Sequence[RunSpec], runs_dir: Path | None = None) -> tuple[Any, list[tuple]]:
    """The fit_many jobs of specs; with ``runs_dir`` each writes its run's checkpoints."""
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
        out = None if runs_dir is None else runs_dir / spec.run_id
        jobs.append((key, _builder(spec, task, steps, build_for), train_config_for(spec),
                     Copy(spec.seed, splits["train"], splits["dev"], splits["test"],
                          out_dir=out, meta=None if out is None else run_meta(spec, task, steps))))
    return task, jobs


def run_meta(spec: RunSpec, task: Any, steps: int) -> dict[str, Any]:
    """What a checkpoint needs to rebuild a generic-path run (:func:`rnnlab.load_run`):
    the task, the spec, and for a user's model its file, name and content hash."""
    from rnnlab.experiments.models import user_model

    model: dict[str, Any] = {"kind": spec.model_kind, "name": spec.cell, "steps": steps}
    if spec.model_kind:
        user = user_model(spec.model_ref)
        model.update(ref=spec.model_ref, object=user.name, source_hash=user.source_hash,
                     file="" if user.path is None else str(Path(user.path).resolve()))
    return {"task": task.name,
            "task_params": {"length": spec.length, "k_train": spec.k_train,
                            "k_dev": spec.k_dev, "k_test": spec.k_test},
            "seed": spec.seed, "data_seed": spec.seed, "memory_spec": spec.asdict(),
            "generic_model": model}


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
    return RunResult(spec, best_dev_score=task.score(float(fit.best_score)),
                     test_score=task.score(fit.test), steps=int(fit.steps),
                     seconds=seconds, engine=engine, path=path)


def rebuild(meta: dict[str, Any], run_dir: Path) -> tuple[Any, Any]:
    """The task and a new (untrained) model of a generic-path run, from its checkpoint's
    meta (:func:`run_meta`); a user's model file that is gone or has changed is refused."""
    import dataclasses

    from rnnlab.errors import RnnlabError, ensure
    from rnnlab.experiments.models import build_for, task_for
    from rnnlab.usermodels import source_hash

    model = meta["generic_model"]
    values = dict(meta["memory_spec"])
    values["model_extra"] = tuple(dict(values.get("model_extra") or {}).items())
    values["train_extra"] = tuple(dict(values.get("train_extra") or {}).items())
    try:
        spec = RunSpec(**values)
    except TypeError as err:
        raise RnnlabError(f"{run_dir}: the checkpoint's run settings do not fit this rnnlab "
                          f"({err})") from None
    if model["kind"]:
        ensure(not str(model.get("ref", "")).startswith("python:"),
               f"{run_dir}: model {model['name']!r} was given as a Python object, so it "
               "cannot be rebuilt here; build it yourself and load the checkpoint's 'model'")
    if model["kind"] and model.get("file"):
        file = Path(model["file"])
        ensure(file.is_file(), f"{run_dir}: the run's model file {file} is missing; put it "
               "back as it was when the run trained to load the run")
        ensure(source_hash(file) == model["source_hash"],
               f"{run_dir}: the run's model file {file} has changed since the run trained "
               f"(content hash {source_hash(file)}, the run's {model['source_hash']}); "
               "restore it, or rerun the experiment to train the new model")
        spec = dataclasses.replace(spec, model_ref=f"{file}:{model['object']}")
    task = task_for(spec)
    return task, build_for(spec, task, int(model["steps"]))


def train_groups(specs: Sequence[RunSpec], runs_dir: Path, path: str = "auto",
                 workers: int | None = None) -> Iterator[RunResult]:
    """Train specs on the generic path, one group per (model, task, length), yielding
    each group's results as it ends.

    Under ``"auto"`` the vmap-or-loop choice is timed once per model and task (on its
    shortest and longest length, :func:`_decisions`) and reused for its every length.
    Groups train side by side in ``workers`` processes (default: ``$RNNLAB_WORKERS`` or
    the CPUs) except on ``"loop"``, the one-run-at-a-time reference.
    """
    from rnnlab.engine.population import worker_count
    from rnnlab.experiments.distributed import group_specs
    from rnnlab.experiments.generic_pool import in_processes

    groups = group_specs(specs)
    decisions = _decisions(groups) if path == "auto" else {}
    tasks = [(g, runs_dir, path, decisions.get((g[0].cell, g[0].task))) for g in groups]
    workers = 1 if path == "loop" else (workers or worker_count())
    values = (in_processes(_train, tasks, workers) if workers > 1 and len(groups) > 1
              else (_train(*task) for task in tasks))
    for results, notes in values:
        for note in notes:
            print(note, file=sys.stderr)
        yield from results


def _decisions(groups: list[list[RunSpec]]) -> dict[tuple[str, str], tuple[str, str]]:
    """vmap or loop per (model, task), timed on its shortest and longest length: when
    both say the same, every length takes it; when they differ (vmap tends to win on
    short sequences, where per-step overhead dominates, and lose on long ones), the
    model and task get no entry and each of its groups is timed on its own."""
    from rnnlab.engine.generic import choose_path

    by_model: dict[tuple[str, str], list[list[RunSpec]]] = {}
    for group in groups:
        by_model.setdefault((group[0].cell, group[0].task), []).append(group)
    decisions = {}
    for (cell, task_name), members in by_model.items():
        ordered = sorted(members, key=lambda g: g[0].length)
        answers = []
        for probe in ordered[:1] + ordered[1:][-1:]:
            _, jobs = _jobs(probe)
            _, build, config, _ = jobs[0]
            answers.append((probe[0].length,
                            *choose_path(build, config, [job[3] for job in jobs])))
        if len({taken for _, taken, _ in answers}) == 1:
            timed = "; ".join(f"length {n}: {why}" for n, _, why in answers)
            decisions[cell, task_name] = (answers[0][1],
                                          f"chosen once for {cell} on {task_name}, {timed}")
    return decisions


def _train(specs: Sequence[RunSpec], runs_dir: Path, path: str,
           decision: tuple[str, str] | None) -> tuple[list[RunResult], list[str]]:
    """One group's results and the lines to print about it (a worker's whole job)."""
    from rnnlab.engine.generic import fit_many

    engine = "loop" if path == "loop" else "generic"
    task, jobs = _jobs(specs, runs_dir)
    s = specs[0]
    start = time.perf_counter()
    try:
        results, _, notes = fit_many(jobs, path=path, decision=decision)
    except NonFiniteError:
        note = (f"generic path, {s.cell} on {s.task} {s.length}: a copy's loss became "
                "non-finite; training the group's runs one by one")
        return list(_one_by_one(specs, jobs, task, runs_dir, engine)), [note]
    seconds = (time.perf_counter() - start) / len(specs)
    # A note reads "<key> xN: vmap (...)" or "<key> xN: loop (timed: vmap ... )".
    taken = "vmap" if any(f" x{len(specs)}: vmap" in n for n in notes) else "loop"
    return ([_result(spec, fit, task, runs_dir, engine, taken, seconds)
             for spec, fit in zip(specs, results, strict=True)],
            [f"generic path, {s.cell} on {s.task} {s.length}: {note}" for note in notes])


def _one_by_one(specs: Sequence[RunSpec], jobs: list[tuple], task: Any, runs_dir: Path,
                engine: str) -> Iterator[RunResult]:
    from rnnlab.engine.generic import fit_many
    from rnnlab.experiments.runners import write_spec

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
