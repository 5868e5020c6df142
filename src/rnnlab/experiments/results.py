"""The memory experiment's results: rows, horizons, the summary, the curves.

This module reads and interprets what runs left behind (``results.csv`` and each
run's ``metrics.csv``); the experiment (:mod:`rnnlab.experiments.memory`) writes
them and the report (:mod:`rnnlab.report.html`) shows them, both through here, so
data flows one way: runs -> results -> summary -> report.

A row has a ``status``: ``ok`` (the run finished; its accuracies are real) or
``failed`` (it stopped, e.g. its loss became non-finite; ``reason`` says why and
its accuracies are empty). A failed run is never read as accuracy 0: it is left
out of every mean, and a length where any seed failed cannot count as reached
(see :data:`HORIZON_DEFINITION`), because a result that was not obtained is not
claimed either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError
from rnnlab.experiments.grid import TASK, RunSpec
from rnnlab.experiments.stats import mean_ci
from rnnlab.io import read_csv, write_csv

OK, FAILED = "ok", "failed"
RESULT_FIELDS: tuple[str, ...] = (
    "cell", "length", "seed", "status", "best_dev_accuracy", "test_accuracy", "steps",
    "seconds", "engine", "config_hash", "reason",
)

HORIZON_DEFINITION = (
    "The memory horizon of a cell is the longest tested length L such that the mean "
    "test accuracy over seeds is at or above the threshold at L and at every shorter "
    "tested length. A cell below the threshold already at the shortest tested length "
    "has no horizon: it fails at every tested length. A cell that passes every tested "
    "length remembers at least the longest one; the experiment cannot see further. "
    "A failed run (its training stopped, e.g. on a non-finite loss) has no accuracy: "
    "it is left out of the mean, and a length where any run failed does not count as "
    "reached, so the horizon ends before it until the run is retried (--retry-failed)."
)


@dataclass(frozen=True)
class RunResult:
    """What one run reports; its curves are in ``run_dir/metrics.csv``.

    A failed run has ``status="failed"``, its ``reason``, and no accuracies.
    """

    spec: RunSpec
    best_dev_accuracy: float | None
    test_accuracy: float | None
    steps: int
    seconds: float
    engine: str
    status: str = OK
    reason: str = ""

    @classmethod
    def failed(cls, spec: RunSpec, reason: str, engine: str, *, steps: int = 0,
               seconds: float = 0.0) -> RunResult:
        return cls(spec, None, None, steps, seconds, engine, status=FAILED, reason=reason)

    def row(self) -> dict[str, Any]:
        def acc(value: float | None) -> str:
            return "" if value is None else f"{value:.6f}"

        return {"cell": self.spec.cell, "length": self.spec.length, "seed": self.spec.seed,
                "status": self.status, "best_dev_accuracy": acc(self.best_dev_accuracy),
                "test_accuracy": acc(self.test_accuracy), "steps": self.steps,
                "seconds": f"{self.seconds:.3f}", "engine": self.engine,
                "config_hash": self.spec.config_hash,
                # one line per row, whatever the message held
                "reason": " ".join(self.reason.split())}


# --- rows --------------------------------------------------------------------------------
def _parse(raw: dict[str, str]) -> dict[str, Any]:
    status = raw.get("status") or OK  # rows written before the status column were all ok
    if status not in (OK, FAILED):
        raise ValueError(f"unknown status {status!r}")

    def acc(key: str) -> float | None:
        if status == FAILED and not raw.get(key):
            return None
        return float(raw[key])

    return {**raw, "status": status, "reason": raw.get("reason") or "",
            "length": int(raw["length"]), "seed": int(raw["seed"]),
            "best_dev_accuracy": acc("best_dev_accuracy"), "test_accuracy": acc("test_accuracy"),
            "steps": int(raw["steps"]), "seconds": float(raw["seconds"])}


def load_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """Rows of ``results.csv`` by config hash, numbers parsed (last row wins)."""
    path = Path(path)
    if not path.exists():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(read_csv(path), start=2):
        try:
            row = _parse(raw)
        except (KeyError, TypeError, ValueError) as err:
            raise RnnlabError(f"{path} has a malformed row at line {number} ({err}); "
                              f"move the file away to start the experiment afresh") from err
        rows[row["config_hash"]] = row
    return rows


def record_result(path: str | Path, result: RunResult) -> None:
    """Write ``result``'s row into ``results.csv``, replacing an earlier row of the same run
    (a retried failure), atomically. The caller holds the folder's lock."""
    path = Path(path)
    rows = [raw for raw in (read_csv(path) if path.exists() else [])
            if raw.get("config_hash") != result.spec.config_hash]
    write_csv(path, RESULT_FIELDS, [*rows, result.row()])


# --- horizon and summary -----------------------------------------------------------------
def reaches(mean: float | None, threshold: float) -> bool:
    """Whether a mean accuracy is at or above ``threshold`` (``None``, no result, is not).

    A mean that equals the threshold in exact arithmetic can land one float rounding
    below it (the mean of 0.85, 0.95 and 0.9 is 0.8999999999999999); accuracies are
    multiples of 1/N, so a tolerance of 1e-9 only undoes that rounding."""
    return mean is not None and mean >= threshold - 1e-9


def memory_horizon(mean_by_length: dict[int, float | None], threshold: float,
                   failed: Sequence[int] = ()) -> int | None:
    """The longest length up to which every tested length has mean >= ``threshold``.

    ``None`` when even the shortest length is below the threshold. Lengths are
    taken in increasing order; the first failure ends the horizon even if a
    longer length happens to pass again (that is noise or luck, not memory). A
    length in ``failed`` (a run there failed) ends it too: it was not measured.
    """
    horizon = None
    for length in sorted(mean_by_length):
        if length in failed or not reaches(mean_by_length[length], threshold):
            break
        horizon = length
    return horizon


def cell_label(cell: str) -> str:
    """How a cell is named in prose: ``residual-srn`` -> ``Residual SRN``."""
    return {"srn": "SRN", "residual-srn": "Residual SRN", "lstm": "LSTM",
            "gru": "GRU"}.get(cell, cell)


def horizon_sentence(cell: str, mean_by_length: dict[int, float | None], threshold: float,
                     failed: dict[int, int] | None = None) -> str:
    """The horizon in words, e.g. "LSTM remembers at least 35 steps". ``failed`` maps a
    length to how many of its runs failed."""
    name = cell_label(cell)
    failed = failed or {}
    lengths = sorted(mean_by_length)
    horizon = memory_horizon(mean_by_length, threshold, list(failed))
    stop = next((n for n in lengths if horizon is None or n > horizon), None)
    if stop is not None and stop in failed:
        runs = "run" if failed[stop] == 1 else "runs"
        cut = (f"{failed[stop]} {runs} at length {stop} failed, so the horizon cannot be "
               f"measured past it (rerun with --retry-failed)")
        if horizon is None:
            return f"{name} has no horizon yet: {cut}."
        return f"{name} remembers at least {horizon} steps; {cut}."
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


def _point(length: int, found: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell and length: the mean and interval over its finished seeds, and its failures."""
    ok = [r for r in found if r.get("status", OK) == OK]
    bad = [r for r in found if r.get("status", OK) == FAILED]
    test = [r["test_accuracy"] for r in ok]
    point: dict[str, Any] = {
        "length": length, "n": len(ok), "mean": None, "std": None, "ci_low": None,
        "ci_high": None, "ci_half_width": None, "dev_mean": None,
        "seeds": [r["seed"] for r in ok], "test_accuracies": test,
        "failed": len(bad), "failed_seeds": [r["seed"] for r in bad],
        "failures": [r["reason"] for r in bad],
    }
    if ok:
        ci = mean_ci(test)
        point.update(n=ci.n, mean=ci.mean, std=ci.std, ci_low=ci.low, ci_high=ci.high,
                     ci_half_width=ci.half_width,
                     dev_mean=sum(r["best_dev_accuracy"] for r in ok) / len(ok))
    return point


def summarize(config: Any, rows: Sequence[dict[str, Any]], *,
              chance: float | None = None) -> dict[str, Any]:
    """Per cell and length: mean test accuracy with its 95% t interval over the seeds that
    finished, and the seeds that failed; per cell: the memory horizon and its sentence.
    ``config`` is the :class:`~rnnlab.experiments.grid.MemoryConfig`; ``rows`` are this
    grid's results."""
    by_point: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        by_point.setdefault((row["cell"], row["length"]), []).append(row)
    cells: dict[str, Any] = {}
    for cell in config.cells:
        points = [_point(n, sorted(by_point[cell, n], key=lambda r: r["seed"]))
                  for n in sorted(config.lengths) if by_point.get((cell, n))]
        means = {p["length"]: p["mean"] for p in points}
        failed = {p["length"]: p["failed"] for p in points if p["failed"]}
        cells[cell] = {
            "label": cell_label(cell),
            "horizon": memory_horizon(means, config.threshold, list(failed)) if means else None,
            "horizon_text": (horizon_sentence(cell, means, config.threshold, failed) if means
                             else f"{cell_label(cell)} has no finished runs yet."),
            "lengths": points,
        }
    expected = len(config.cells) * len(config.lengths) * config.seeds
    n_failed = sum(1 for r in rows if r.get("status", OK) == FAILED)
    return {
        "experiment": "memory",
        "task": TASK,
        "threshold": config.threshold,
        "chance": chance,
        "confidence_level": 0.95,
        "interval": ("Student-t 95% interval of the mean over seeds (n-1 degrees of "
                     "freedom); undefined (null) with a single seed."),
        "horizon_definition": HORIZON_DEFINITION,
        "runs": {"expected": expected, "finished": len(rows) - n_failed, "failed": n_failed,
                 "complete": len(rows) - n_failed == expected},
        "cells": cells,
        "config": config.asdict(),
    }


# --- curves ------------------------------------------------------------------------------
_CURVE_COLUMNS = ("step", "train_loss", "dev_loss", "dev_accuracy")


def load_curve(path: str | Path) -> dict[str, list[Any]] | None:
    """A run's metrics CSV as lists per quantity (``None`` where a row has no value);
    ``None`` if the file is missing, so a report can still be drawn without it."""
    path = Path(path)
    if not path.exists():
        return None
    curve: dict[str, list[Any]] = {key: [] for key in _CURVE_COLUMNS}
    for row in read_csv(path):
        for key in _CURVE_COLUMNS:
            curve[key].append(_number(row.get(key), int if key == "step" else float))
    return curve


def _number(raw: str | None, kind: type) -> Any:
    """A CSV cell as a number; empty or unreadable is ``None`` (a gap in the curve)."""
    try:
        return None if raw in (None, "") else kind(float(raw))
    except (ValueError, OverflowError):
        return None
