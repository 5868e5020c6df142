"""The memory-capacity experiment: cells x dependency lengths x seeds on DigitSum.

DigitSum (seed 004) asks for the sum of the first two digits of a sequence of
length ``L``; everything after them is distraction. A cell that solves length
``L`` has carried two digits across ``L - 2`` steps. Training every cell at
every length with several seeds and reading where accuracy collapses measures
how far back each cell remembers: its **memory horizon**.

The flow is one way (grid -> runs -> results.csv -> summary.json -> report):

* :class:`MemoryConfig` is the whole experiment: the grid, the protocol and any
  hyper-parameters the user overrides. :meth:`MemoryConfig.specs` expands it
  into one :class:`RunSpec` per grid point.
* A run is identified by the hash of its :class:`RunSpec` (everything that can
  change its result, nothing that cannot: not the engine, not the threshold).
  ``results.csv`` keeps one row per finished run; a rerun trains only the specs
  whose hash has no row yet, so an interrupted experiment continues and a
  changed option retrains only what it changes.
* Training one grid point is pluggable (:mod:`rnnlab.experiments.runners`):
  a runner takes a list of specs and yields a :class:`RunResult` as each run
  finishes, so a lock-step engine can train many at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError, check
from rnnlab.experiments.progress import Progress
from rnnlab.experiments.stats import mean_ci
from rnnlab.io import append_csv_row, atomic_write_json, ensure_dir, read_csv
from rnnlab.protocols import get_protocol

TASK = "digitsum"
DEFAULT_CELLS: tuple[str, ...] = ("srn", "residual-srn", "lstm", "gru")
DEFAULT_LENGTHS: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35)
DEFAULT_SEEDS = 3
DEFAULT_THRESHOLD = 0.9
# Part of every run's hash: bump it when the meaning of a spec field changes, so
# old rows are no longer taken for results of the new definition.
SPEC_VERSION = 1

RESULT_FIELDS: tuple[str, ...] = (
    "cell", "length", "seed", "best_dev_accuracy", "test_accuracy", "steps", "seconds",
    "engine", "config_hash",
)

HORIZON_DEFINITION = (
    "The memory horizon of a cell is the longest tested length L such that the mean "
    "test accuracy over seeds is at or above the threshold at L and at every shorter "
    "tested length. A cell below the threshold already at the shortest tested length "
    "has no horizon: it fails at every tested length. A cell that passes every tested "
    "length remembers at least the longest one; the experiment cannot see further."
)


# Each setting of a run that the experiment names and the user may override, and
# where a protocol (rnnlab.protocols) keeps it: (section, key). Anything else a
# protocol sets travels with the run as ``model_extra``/``train_extra``.
SETTINGS: dict[str, tuple[str, str]] = {
    "k_train": ("task", "k_train"),
    "k_dev": ("task", "k_dev"),
    "k_test": ("task", "k_test"),
    "embedding_dim": ("model", "embedding_dim"),
    "hidden_size": ("model", "hidden_size"),
    "init": ("model", "init"),
    "optimizer": ("train", "optimizer"),
    "lr": ("train", "lr"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "shuffle": ("train", "shuffle"),
    "eval_every": ("train", "eval_every"),
    "clip": ("train", "clip_norm"),
}
# Set by the grid point, never by a protocol.
_GRID_KEYS = {"model": {"cell"}, "train": {"seed"}, "task": {"length"}}


def _defaults(section: str) -> dict[str, Any]:
    """Field defaults of the config a section feeds (a protocol may leave some unset)."""
    from rnnlab.models import ModelConfig
    from rnnlab.tasks import task_class
    from rnnlab.train import TrainConfig

    cls = {"model": ModelConfig, "train": TrainConfig, "task": task_class(TASK)}[section]
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's result; its hash names the run."""

    cell: str
    length: int
    seed: int
    k_train: int
    k_dev: int
    k_test: int
    embedding_dim: int
    hidden_size: int
    init: str
    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    shuffle: bool
    eval_every: int
    clip: float | None
    model_extra: tuple[tuple[str, Any], ...] = ()
    train_extra: tuple[tuple[str, Any], ...] = ()
    task: str = TASK

    def asdict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_extra"], d["train_extra"] = dict(self.model_extra), dict(self.train_extra)
        return d

    @property
    def config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the spec as canonical JSON."""
        payload = {"version": SPEC_VERSION, **self.asdict()}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def run_id(self) -> str:
        """A folder name a person can read and that still cannot collide."""
        return f"{self.cell}-L{self.length}-s{self.seed}-{self.config_hash[:8]}"


def known_cells() -> list[str]:
    """Cell names the cell registry knows (``rnnlab.cells.CELLS``)."""
    from rnnlab.cells import CELLS

    return list(CELLS)


def known_inits() -> list[str]:
    """Initialiser names the cells accept (``rnnlab.cells.init_names``)."""
    from rnnlab.cells import init_names

    return list(init_names())


@dataclass(frozen=True)
class MemoryConfig:
    """The whole memory experiment.

    ``seeds`` is how many seeds (``0 .. seeds-1``) each cell and length gets. The
    hyper-parameter fields default to ``None``, meaning "whatever ``protocol``
    says"; a value given overrides the protocol. ``engine`` chooses how runs are
    trained and never changes a result beyond float tolerance, so it is not part
    of any run's hash.
    """

    cells: tuple[str, ...] = DEFAULT_CELLS
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    seeds: int = DEFAULT_SEEDS
    threshold: float = DEFAULT_THRESHOLD
    protocol: str = "default"
    engine: str = "fast"
    k_train: int | None = None
    k_dev: int | None = None
    k_test: int | None = None
    embedding_dim: int | None = None
    hidden_size: int | None = None
    init: str | None = None
    optimizer: str | None = None
    lr: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    shuffle: bool | None = None
    eval_every: int | None = None
    clip: float | None = None

    def __post_init__(self) -> None:
        # Lists from Python callers become tuples so the config stays hashable.
        object.__setattr__(self, "cells", tuple(self.cells))
        object.__setattr__(self, "lengths", tuple(self.lengths))

    def validate(self) -> MemoryConfig:
        """Raise :class:`RnnlabError` with one sentence for the first bad value."""
        from rnnlab.experiments.runners import ENGINES

        check(len(self.cells) > 0, "--cells needs at least one cell name")
        known = known_cells()
        for cell in self.cells:
            check(cell in known,
                  f"unknown cell {cell!r} in --cells; known cells: {', '.join(known)}")
        check(len(set(self.cells)) == len(self.cells), "--cells lists a cell twice")
        check(len(self.lengths) > 0, "--lengths needs at least one length")
        for length in self.lengths:
            check(isinstance(length, int) and length >= 3,
                  f"every length must be an integer >= 3 (two digits to sum and at least "
                  f"one step of distraction), got {length!r} in --lengths")
        check(len(set(self.lengths)) == len(self.lengths), "--lengths lists a length twice")
        check(isinstance(self.seeds, int) and self.seeds >= 1,
              f"--seeds must be a whole number >= 1, got {self.seeds!r}")
        check(isinstance(self.threshold, (int, float)) and 0.0 < self.threshold <= 1.0,
              f"--threshold must be in (0, 1] (an accuracy), got {self.threshold!r}")
        get_protocol(self.protocol)
        check(self.engine in ENGINES,
              f"unknown engine {self.engine!r}; known engines: {', '.join(ENGINES)}")
        s = self.settings()
        # field -> the CLI option that sets it
        options = {"k_train": "k-train", "k_dev": "k-dev", "k_test": "k-test",
                   "embedding_dim": "embedding", "hidden_size": "hidden",
                   "batch_size": "batch-size", "epochs": "epochs", "eval_every": "eval-every"}
        for name, option in options.items():
            check(s[name] >= 1, f"--{option} must be >= 1, got {s[name]}")
        check(s["lr"] > 0 and math.isfinite(s["lr"]), f"--lr must be > 0, got {s['lr']}")
        check(s["clip"] is None or s["clip"] > 0,
              f"--clip must be > 0 (or 0 for no clipping), got {s['clip']}")
        inits = known_inits()
        check(s["init"] in inits,
              f"unknown --init {s['init']!r}; known initialisers: {', '.join(inits)}")
        check(s["optimizer"] in ("adam", "sgd"),
              f"--optimizer must be adam or sgd, got {s['optimizer']!r}")
        return self

    def settings(self) -> dict[str, Any]:
        """Every :data:`SETTINGS` value (the protocol's, or this config's override) and
        the protocol's other model and train settings as ``model_extra``/``train_extra``."""
        protocol = get_protocol(self.protocol)
        sections = {"model": protocol.model, "train": protocol.train, "task": protocol.task}
        resolved: dict[str, Any] = {}
        for name, (section, key) in SETTINGS.items():
            value = getattr(self, name)
            if value is None:
                value = sections[section].get(key, _defaults(section).get(key))
            resolved[name] = value
        # One spelling per value, so 5e-3 and 0.005, or 1 and 1.0, hash alike;
        # a clip of 0 means no clipping.
        resolved["lr"] = float(resolved["lr"])
        resolved["clip"] = float(resolved["clip"]) if resolved["clip"] else None
        named = {section: {key for sec, key in SETTINGS.values() if sec == section}
                 | _GRID_KEYS[section] for section in sections}
        for section in ("model", "train"):
            extra = {k: v for k, v in sections[section].items() if k not in named[section]}
            resolved[f"{section}_extra"] = tuple(sorted(extra.items()))
        return resolved

    def specs(self) -> list[RunSpec]:
        """One spec per grid point, in the order cell, length, seed."""
        s = self.settings()
        return [RunSpec(cell=c, length=n, seed=k, **s)
                for c in self.cells for n in sorted(self.lengths) for k in range(self.seeds)]

    def asdict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cells"], d["lengths"] = list(self.cells), sorted(self.lengths)
        resolved = self.settings()
        for section in ("model", "train"):
            resolved[f"{section}_extra"] = dict(resolved[f"{section}_extra"])
        d["resolved"] = resolved
        return d


@dataclass(frozen=True)
class RunResult:
    """What one finished run reports; its curves are in ``run_dir/metrics.csv``."""

    spec: RunSpec
    best_dev_accuracy: float
    test_accuracy: float
    steps: int
    seconds: float
    engine: str

    def row(self) -> dict[str, Any]:
        return {"cell": self.spec.cell, "length": self.spec.length, "seed": self.spec.seed,
                "best_dev_accuracy": f"{self.best_dev_accuracy:.6f}",
                "test_accuracy": f"{self.test_accuracy:.6f}", "steps": self.steps,
                "seconds": f"{self.seconds:.3f}", "engine": self.engine,
                "config_hash": self.spec.config_hash}


Runner = Callable[[Sequence[RunSpec], Path], Iterable[RunResult]]
"""Trains the given specs, writing each run's files under ``runs_dir / spec.run_id``,
and yields each result as soon as its run is finished (in any order)."""


# --- results -----------------------------------------------------------------------------
def load_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """Rows of ``results.csv`` by config hash, numbers parsed (last row wins)."""
    path = Path(path)
    if not path.exists():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    for raw in read_csv(path):
        try:
            row = {**raw, "length": int(raw["length"]), "seed": int(raw["seed"]),
                   "best_dev_accuracy": float(raw["best_dev_accuracy"]),
                   "test_accuracy": float(raw["test_accuracy"]),
                   "steps": int(raw["steps"]), "seconds": float(raw["seconds"])}
        except (KeyError, TypeError, ValueError) as err:
            raise RnnlabError(f"{path} has a malformed row ({err}); "
                              f"move it away to start the experiment afresh") from err
        rows[row["config_hash"]] = row
    return rows


# --- horizon and summary -----------------------------------------------------------------
def reaches(mean: float, threshold: float) -> bool:
    """Whether a mean accuracy is at or above ``threshold``. A mean that equals the
    threshold in exact arithmetic can land one float rounding below it (the mean of
    0.85, 0.95 and 0.9 is 0.8999999999999999); accuracies are multiples of 1/N, so a
    tolerance of 1e-9 only undoes that rounding."""
    return mean >= threshold - 1e-9


def memory_horizon(mean_by_length: dict[int, float], threshold: float) -> int | None:
    """The longest length up to which every tested length has mean >= ``threshold``.

    ``None`` when even the shortest length is below the threshold. Lengths are
    taken in increasing order; the first failure ends the horizon even if a
    longer length happens to pass again (that is noise or luck, not memory).
    """
    horizon = None
    for length in sorted(mean_by_length):
        if reaches(mean_by_length[length], threshold):
            horizon = length
        else:
            break
    return horizon


def cell_label(cell: str) -> str:
    """How a cell is named in prose: ``residual-srn`` -> ``Residual SRN``."""
    return {"srn": "SRN", "residual-srn": "Residual SRN", "lstm": "LSTM",
            "gru": "GRU"}.get(cell, cell)


def horizon_sentence(cell: str, mean_by_length: dict[int, float], threshold: float) -> str:
    """The horizon in words, e.g. "LSTM remembers at least 35 steps"."""
    name = cell_label(cell)
    lengths = sorted(mean_by_length)
    horizon = memory_horizon(mean_by_length, threshold)
    if horizon is None:
        first = lengths[0]
        return (f"{name} fails at every tested length (mean test accuracy "
                f"{mean_by_length[first]:.2f} < {threshold:g} already at length {first}).")
    if horizon == lengths[-1]:
        return (f"{name} remembers at least {horizon} steps (mean test accuracy >= "
                f"{threshold:g} at every tested length up to {horizon}).")
    nxt = lengths[lengths.index(horizon) + 1]
    return (f"{name} remembers {horizon} steps and fails beyond {horizon} (mean test "
            f"accuracy {mean_by_length[nxt]:.2f} < {threshold:g} at length {nxt}).")


def summarize(config: MemoryConfig, rows: Sequence[dict[str, Any]], *,
              chance: float | None = None) -> dict[str, Any]:
    """Per cell and length: mean test accuracy with its 95% t interval over seeds;
    per cell: the memory horizon and its sentence. ``rows`` are this grid's results."""
    by_point: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        by_point.setdefault((row["cell"], row["length"]), []).append(row)
    cells: dict[str, Any] = {}
    for cell in config.cells:
        points = []
        for length in sorted(config.lengths):
            found = sorted(by_point.get((cell, length), []), key=lambda r: r["seed"])
            if not found:
                continue
            test = [r["test_accuracy"] for r in found]
            ci = mean_ci(test)
            points.append({
                "length": length, "n": ci.n, "mean": ci.mean, "std": ci.std,
                "ci_low": ci.low, "ci_high": ci.high, "ci_half_width": ci.half_width,
                "dev_mean": sum(r["best_dev_accuracy"] for r in found) / len(found),
                "seeds": [r["seed"] for r in found], "test_accuracies": test,
            })
        means = {p["length"]: p["mean"] for p in points}
        cells[cell] = {
            "label": cell_label(cell),
            "horizon": memory_horizon(means, config.threshold) if means else None,
            "horizon_text": (horizon_sentence(cell, means, config.threshold) if means
                             else f"{cell_label(cell)} has no finished runs yet."),
            "lengths": points,
        }
    expected = len(config.cells) * len(config.lengths) * config.seeds
    return {
        "experiment": "memory",
        "task": TASK,
        "threshold": config.threshold,
        "chance": chance,
        "confidence_level": 0.95,
        "interval": ("Student-t 95% interval of the mean over seeds (n-1 degrees of "
                     "freedom); undefined (null) with a single seed."),
        "horizon_definition": HORIZON_DEFINITION,
        "runs": {"expected": expected, "finished": len(rows),
                 "complete": len(rows) == expected},
        "cells": cells,
        "config": config.asdict(),
    }


# --- running -----------------------------------------------------------------------------
@dataclass
class MemoryOutcome:
    """Where everything went, and what this call did."""

    out_dir: Path
    summary: dict[str, Any]
    report: Path
    trained: int
    reused: int
    seconds: float


def run_memory(config: MemoryConfig, out_dir: str | Path, *,
               runner: Runner | None = None, progress: Progress | bool | None = None
               ) -> MemoryOutcome:
    """Train every grid point not yet in ``out_dir/results.csv``, then write
    ``summary.json``, the PNG figures and ``report.html``.

    ``runner`` defaults to the one for ``config.engine``. ``progress``: ``None``
    shows a live line only on an interactive terminal, ``False`` never (the final
    line on stderr is always printed), or pass your own :class:`Progress`.
    """
    from rnnlab.experiments.runners import get_runner
    from rnnlab.report.html import write_memory_report

    config.validate()
    out_dir = ensure_dir(out_dir)
    results_path = out_dir / "results.csv"
    specs = config.specs()
    done = load_results(results_path)
    todo = [s for s in specs if s.config_hash not in done]
    runner = runner or get_runner(config.engine)

    if not isinstance(progress, Progress):
        progress = Progress(len(specs), len(todo), enabled=None if progress is None else False)
    start = time.monotonic()
    try:
        if todo:
            progress.start()
            for result in _checked(runner(todo, out_dir / "runs"), todo):
                append_csv_row(results_path, RESULT_FIELDS, result.row())
                s = result.spec
                progress.update(note=f"{s.cell} L={s.length} seed {s.seed}: "
                                     f"test {result.test_accuracy:.3f}")
    finally:
        progress.close()  # also on Ctrl-C or an error, so the next line starts clean

    done = load_results(results_path)
    rows = [done[s.config_hash] for s in specs if s.config_hash in done]
    summary = summarize(config, rows, chance=task_chance(config))
    atomic_write_json(out_dir / "summary.json", summary)
    report = write_memory_report(out_dir, summary, specs, rows)
    return MemoryOutcome(out_dir, summary, report, trained=len(todo),
                         reused=len(specs) - len(todo), seconds=time.monotonic() - start)


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
    """DigitSum's chance accuracy (it does not depend on the length)."""
    from rnnlab.tasks import get_task

    return float(get_task(TASK, length=min(config.lengths)).chance)


# --- curves ------------------------------------------------------------------------------
# The metrics CSV is written by whichever engine trained the run; these are the
# column names it may use for each quantity, first match wins.
_CURVE_COLUMNS = {
    "step": ("step",),
    "train_loss": ("train_loss",),
    "dev_loss": ("dev_loss",),
    "dev_accuracy": ("dev_accuracy", "dev_metric", "dev_acc"),
}


def load_curve(path: str | Path) -> dict[str, list[Any]] | None:
    """A run's metrics CSV as lists per quantity (``None`` where a row has no value);
    ``None`` if the file is missing, so a report can still be drawn without it."""
    path = Path(path)
    if not path.exists():
        return None
    rows = read_csv(path)
    curve: dict[str, list[Any]] = {key: [] for key in _CURVE_COLUMNS}
    for row in rows:
        for key, names in _CURVE_COLUMNS.items():
            raw = next((row[n] for n in names if row.get(n) not in (None, "")), None)
            value = None if raw is None else float(raw)
            curve[key].append(int(value) if key == "step" and value is not None else value)
    return curve
