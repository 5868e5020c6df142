"""The memory-capacity experiment: models x tasks x lengths (x lr x weight decay) x seeds.

Every task of the suite (``rnnlab.tasks``, with a memory axis) and every model (built-in
cells, a user's cell or factory: :mod:`rnnlab.experiments.models`) is run the same way;
DigitSum is the default and the example below.

DigitSum (seed 004) asks for the sum of the first two digits of a sequence of
length ``L``; everything after them is distraction. A cell that solves length
``L`` has carried two digits across ``L - 2`` steps. Training every cell at
every length with several seeds and reading where accuracy collapses measures
how far back each cell remembers: its **memory horizon**.

The flow is one way (grid -> runs -> results.csv -> summary.json -> report):

* :mod:`rnnlab.experiments.grid`: :class:`MemoryConfig` is the whole experiment;
  :meth:`MemoryConfig.specs` expands it into one :class:`RunSpec` per grid point,
  named by its hash.
* Training is pluggable (:mod:`rnnlab.experiments.runners`): a runner takes a list
  of specs and yields a :class:`RunResult` as each run finishes or fails.
* :mod:`rnnlab.experiments.results`: ``results.csv`` keeps one row per run, ``ok``
  or ``failed``; a rerun trains only the specs with no row yet (and, with
  ``retry_failed``, the failed ones), so an interrupted experiment continues.
  The horizons and the summary are computed there, and the report reads them.

The output folder is locked (:class:`rnnlab.io.FolderLock`) for the whole call, so
two experiments never write one ``results.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.experiments.grid import TASK, MemoryConfig, RunSpec
from rnnlab.experiments.progress import Progress
from rnnlab.experiments.results import FAILED, RunResult, load_results, record_result, summarize
from rnnlab.io import FolderLock, atomic_write_json, clean_temporaries
from rnnlab.tasks import memory_task

Runner = Callable[[Sequence[RunSpec], Path], Iterable[RunResult]]
"""Trains the given specs, writing each run's files under ``runs_dir / spec.run_id``,
and yields each result as soon as its run is finished or has failed (in any order)."""


@dataclass
class MemoryOutcome:
    """Where everything went, and what this call did."""

    out_dir: Path
    summary: dict[str, Any]
    report: Path
    trained: int
    reused: int
    seconds: float
    failed: int = 0


def run_memory(config: MemoryConfig, out_dir: str | Path, *,
               runner: Runner | None = None, progress: Progress | bool | None = None,
               retry_failed: bool = False) -> MemoryOutcome:
    """Train every grid point not yet in ``out_dir/results.csv``, then write
    ``summary.json``, the figures (PNG and SVG) and ``report.html``. Every model is built
    on a probe batch of every task first, so a broken model file fails before training.

    A run that fails (non-finite loss) becomes a ``failed`` row and the others go on;
    a rerun skips it like a finished run unless ``retry_failed``. ``runner`` defaults
    to the one for ``config.engine``. ``progress``: ``None`` shows a live line only on
    an interactive terminal, ``False`` never, or pass your own :class:`Progress`.
    """
    config.validate()
    with FolderLock(out_dir):
        return _run_locked(config, Path(out_dir), runner, progress, retry_failed)


def _run_locked(config: MemoryConfig, out_dir: Path, runner: Runner | None,
                progress: Progress | bool | None, retry_failed: bool) -> MemoryOutcome:
    from rnnlab.experiments.models import check_models
    from rnnlab.experiments.runners import get_runner
    from rnnlab.report.html import write_memory_report

    results_path = out_dir / "results.csv"
    specs = config.specs()
    # Every model built on a probe of every task before any training: a factory's
    # mistake is one sentence now, not a traceback an hour in.
    sizes = check_models(specs)
    order = [s.config_hash for s in specs]
    done = load_results(results_path)
    todo = [s for s in specs if s.config_hash not in done
            or (retry_failed and done[s.config_hash]["status"] == FAILED)]
    runner = runner or get_runner(config.engine)
    # What a kill mid-write left behind; safe to remove, the folder is ours now.
    clean_temporaries(out_dir)
    for spec in todo:
        clean_temporaries(out_dir / "runs" / spec.run_id)

    if not isinstance(progress, Progress):
        progress = Progress(len(specs), len(todo), enabled=None if progress is None else False)
    start = time.monotonic()
    failed = 0
    try:
        if todo:
            progress.start()
            for result in _checked(runner(todo, out_dir / "runs"), todo):
                s = result.spec
                record_result(results_path, result, sizes.get((s.cell, s.task, s.hidden_size)),
                              order)
                if result.status == FAILED:
                    failed += 1
                    note = f"failed ({result.reason[:60]})"
                else:
                    note = f"test {result.test_score:.3f}"
                task = "" if len(config.tasks) == 1 else f" {s.task}"
                grid = "" if len(config.lr_values()) * len(config.weight_decay_values()) == 1 \
                    else f" lr {s.lr:g} wd {s.weight_decay:g}"
                where = getattr(runner, "label", None)
                where = f"[{where}] " if where else ""
                progress.update(note=f"{where}{s.cell}{task} L={s.length}{grid} seed {s.seed}: "
                                     f"{note}")
    finally:
        progress.close()  # also on Ctrl-C or an error, so the next line starts clean

    done = load_results(results_path)
    rows = [done[s.config_hash] for s in specs if s.config_hash in done]
    by_model = {(s.cell, s.task): sizes.get((s.cell, s.task, s.hidden_size), {})
                for s in specs}
    chance = task_chance(config)
    baselines = task_baselines(config)
    if chance is not None:
        baselines[config.tasks[0]]["chance"] = chance
    summary = summarize(config, rows, chance=chance, baselines=baselines,
                        sizes={k: {"params": v.get("params"), "state_size": v.get("state_size"),
                                   "hidden_size": next(s.hidden_size for s in specs
                                                       if (s.cell, s.task) == k)}
                               for k, v in by_model.items()},
                        provenance=provenance(rows))
    atomic_write_json(out_dir / "summary.json", summary)
    report = write_memory_report(out_dir, summary, specs, rows)
    return MemoryOutcome(out_dir, summary, report, trained=len(todo),
                         reused=len(specs) - len(todo), seconds=time.monotonic() - start,
                         failed=failed)


def _checked(results: Iterable[RunResult], todo: Sequence[RunSpec]) -> Iterator[RunResult]:
    """Pass results through, refusing one for a spec that was not asked for
    (a runner bug that would otherwise write a wrong row)."""
    wanted = {s.config_hash for s in todo}
    for result in results:
        if result.spec.config_hash not in wanted:
            raise RuntimeError(f"runner returned a result for an unrequested run "
                               f"{result.spec.run_id}")
        yield result


def task_chance(config: MemoryConfig) -> float | None:
    """The first task's chance score (DigitSum's does not depend on the length)."""
    return None if config.tasks[0] != TASK else float(
        memory_task(TASK, min(config.lengths_for(TASK))).chance_score)


def task_baselines(config: MemoryConfig) -> dict[str, dict[str, Any]]:
    """Per task: what its axis and score mean, chance on the score's scale, and the
    memoryless baseline's score at each length (fitted on train, scored on test, on the
    split sizes of the experiment's first seed)."""
    from rnnlab.experiments.models import task_params

    s = config.settings()
    out = {}
    for name in config.tasks:
        memoryless = {}
        for n in config.lengths_for(name):
            task = memory_task(name, n, **task_params(name, s["k_train"], s["k_dev"],
                                                      s["k_test"]))
            memoryless[n] = float(task.memoryless_score(task.splits(seed=0)))
        described = task.describe_memory()
        out[name] = {"label": name, "axis": described["axis"],
                     "axis_label": described["axis_label"], "score": described["score"],
                     "chance": float(described["chance_score"]), "memoryless": memoryless,
                     "unit": "steps"}
    return out


def provenance(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What ran the experiment: versions, the CPU, and the paths the runs took."""
    import platform

    import torch

    from rnnlab import __version__
    from rnnlab.engine.native import cpu_name

    return {"rnnlab": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "cpu": cpu_name(),
            "paths": sorted({f"{r.get('engine', '')}/{r.get('path', '')}".rstrip("/")
                             for r in rows})}
