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
# A tidy table: one row per run, every setting that can tell runs apart a column, in
# grid order. ``length`` is the value of the task's memory axis; ``best_dev_score`` and
# ``test_score`` hold the task's score in [0, 1] (accuracy, or 1 - MSE / MSE of the mean
# for a regression task: ``score`` says which); ``engine`` is the engine asked for and ``path``
# what actually ran (the engine backend ``kernel``/``torch``, ``vmap``, ``loop``,
# ``trainer``); ``params`` and ``state_size`` are the model's sizes.
RESULT_FIELDS: tuple[str, ...] = (
    "model", "task", "length", "seed", "lr", "weight_decay", "hidden_size", "params",
    "state_size", "embedding_dim", "epochs", "batch_size", "optimizer", "clip", "status",
    "best_dev_score", "test_score", "score", "steps", "seconds", "engine", "path",
    "model_source", "cell", "config_hash", "reason",
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
    best_dev_score: float | None
    test_score: float | None
    steps: int
    seconds: float
    engine: str
    status: str = OK
    reason: str = ""
    path: str = ""

    @classmethod
    def failed(cls, spec: RunSpec, reason: str, engine: str, *, steps: int = 0,
               seconds: float = 0.0, path: str = "") -> RunResult:
        return cls(spec, None, None, steps, seconds, engine, status=FAILED, reason=reason,
                   path=path)

    def row(self, sizes: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run's ``results.csv`` row; ``sizes`` adds ``params`` and ``state_size``."""
        def acc(value: float | None) -> str:
            return "" if value is None else f"{value:.6f}"

        s = self.spec
        sizes = sizes or {}
        return {"model": s.cell, "task": s.task, "length": s.length, "seed": s.seed,
                "lr": f"{s.lr:g}", "weight_decay": f"{s.weight_decay:g}",
                "hidden_size": s.hidden_size, "params": sizes.get("params", ""),
                "state_size": "" if sizes.get("state_size") is None else sizes["state_size"],
                "embedding_dim": s.embedding_dim, "epochs": s.epochs,
                "batch_size": s.batch_size, "optimizer": s.optimizer,
                "clip": "" if s.clip is None else f"{s.clip:g}",
                "status": self.status, "best_dev_score": acc(self.best_dev_score),
                "test_score": acc(self.test_score), "score": _score_name(s.task),
                "steps": self.steps, "seconds": f"{self.seconds:.3f}", "engine": self.engine,
                "path": self.path, "model_source": s.model_source, "cell": s.cell,
                "config_hash": s.config_hash,
                # one line per row, whatever the message held
                "reason": " ".join(self.reason.split())}


def _score_name(task: str) -> str:
    from rnnlab.tasks import task_class

    try:
        return task_class(task)().score_label
    except Exception:  # a task unregistered since: the row is still worth keeping
        return ""


# --- rows --------------------------------------------------------------------------------
# Columns renamed since: files written before hold the task's score under the old names.
_OLD_COLUMNS = {"best_dev_accuracy": "best_dev_score", "test_accuracy": "test_score"}


def _current(raw: dict[str, str]) -> dict[str, str]:
    """A row read from ``results.csv`` with the columns under their current names."""
    return {_OLD_COLUMNS.get(k, k): v for k, v in raw.items()
            if k not in _OLD_COLUMNS or _OLD_COLUMNS[k] not in raw}


def _parse(raw: dict[str, str]) -> dict[str, Any]:
    raw = _current(raw)
    status = raw.get("status") or OK  # rows written before the status column were all ok
    if status not in (OK, FAILED):
        raise ValueError(f"unknown status {status!r}")

    def acc(key: str) -> float | None:
        if status == FAILED and not raw.get(key):
            return None
        return float(raw[key])

    def number(key: str, kind: type, default: Any) -> Any:
        return kind(raw[key]) if raw.get(key) not in (None, "") else default

    cell = raw.get("model") or raw["cell"]  # files before the model column named the cell
    return {**raw, "status": status, "reason": raw.get("reason") or "",
            "cell": cell, "model": cell, "task": raw.get("task") or TASK,
            "lr": number("lr", float, None), "weight_decay": number("weight_decay", float, 0.0),
            "params": number("params", int, None), "state_size": number("state_size", int, None),
            "hidden_size": number("hidden_size", int, None), "path": raw.get("path") or "",
            "length": int(raw["length"]), "seed": int(raw["seed"]),
            "best_dev_score": acc("best_dev_score"), "test_score": acc("test_score"),
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


def record_result(path: str | Path, result: RunResult, sizes: dict[str, Any] | None = None,
                  order: Sequence[str] = ()) -> None:
    """Write ``result``'s row into ``results.csv``, replacing an earlier row of the same run
    (a retried failure), atomically. The caller holds the folder's lock. ``order`` (the
    grid's config hashes) keeps rows in grid order; rows of other grids go last."""
    path = Path(path)
    rows = [_current(raw) for raw in (read_csv(path) if path.exists() else [])
            if raw.get("config_hash") != result.spec.config_hash]
    rows.append(result.row(sizes))
    rank = {h: i for i, h in enumerate(order)}
    rows.sort(key=lambda r: rank.get(r.get("config_hash", ""), len(rank)))
    write_csv(path, RESULT_FIELDS, [{k: r.get(k, "") for k in RESULT_FIELDS} for r in rows])


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


def horizon_range(points: Sequence[dict[str, Any]], threshold: float,
                  failed: Sequence[int] = ()) -> tuple[int | None, int | None]:
    """The horizon read from the intervals' lower and upper ends: how short it may be and
    how long it may be, given the spread over seeds (the mean where there is no interval)."""
    low = {p["length"]: p["ci_low"] if p["ci_low"] is not None else p["mean"] for p in points}
    high = {p["length"]: p["ci_high"] if p["ci_high"] is not None else p["mean"] for p in points}
    return memory_horizon(low, threshold, failed), memory_horizon(high, threshold, failed)


def uncertainty_words(horizon: int | None, low: int | None, high: int | None,
                      unit: str = "steps") -> str:
    """The horizon's own uncertainty in words ("" when the intervals agree with it)."""
    parts = []
    if high is not None and high != horizon:
        parts.append(f"{high} {unit} is within the 95% interval")
    if low != horizon:
        parts.append("the interval's lower end reaches " +
                     ("no tested length" if low is None else f"only {low}"))
    return "; ".join(parts)


def _point(length: int, found: list[dict[str, Any]]) -> dict[str, Any]:
    """One model, task and length: the mean and interval over its finished seeds (inside
    [0, 1], a score's range), and its failures."""
    ok = [r for r in found if r.get("status", OK) == OK]
    bad = [r for r in found if r.get("status", OK) == FAILED]
    test = [r["test_score"] for r in ok]
    point: dict[str, Any] = {
        "length": length, "n": len(ok), "mean": None, "std": None, "ci_low": None,
        "ci_high": None, "ci_half_width": None, "dev_mean": None,
        "seeds": [r["seed"] for r in ok], "test_accuracies": test,
        "failed": len(bad), "failed_seeds": [r["seed"] for r in bad],
        "failures": [r["reason"] for r in bad],
    }
    if ok:
        ci = mean_ci(test, bounds=(0.0, 1.0))
        point.update(n=ci.n, mean=ci.mean, std=ci.std, ci_low=ci.low, ci_high=ci.high,
                     ci_half_width=ci.half_width,
                     dev_mean=sum(r["best_dev_score"] for r in ok) / len(ok))
    return point


def best_setting(found: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of the (lr, weight decay) setting with the best mean *dev* score over its
    finished seeds (never the test score: choosing on test would overstate it), and that
    setting with the dev mean of every setting tried. The first in grid order wins a tie."""
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for row in found:
        settings.setdefault((row.get("lr"), row.get("weight_decay", 0.0)), []).append(row)

    def dev(rows: list[dict[str, Any]]) -> float | None:
        ok = [r["best_dev_score"] for r in rows if r.get("status", OK) == OK]
        return sum(ok) / len(ok) if ok else None

    devs = {key: dev(rows) for key, rows in settings.items()}
    best = max(settings, key=lambda k: -1.0 if devs[k] is None else devs[k])
    tried = [{"lr": k[0], "weight_decay": k[1], "dev_mean": devs[k]} for k in settings]
    return settings[best], {"lr": best[0], "weight_decay": best[1], "tried": tried}


def _entry(name: str, points: list[dict[str, Any]], threshold: float, unit: str,
           sizes: dict[str, Any]) -> dict[str, Any]:
    means = {p["length"]: p["mean"] for p in points}
    failed = {p["length"]: p["failed"] for p in points if p["failed"]}
    horizon = memory_horizon(means, threshold, list(failed)) if means else None
    low, high = horizon_range(points, threshold, list(failed)) if means else (None, None)
    text = (horizon_sentence(name, means, threshold, failed) if means
            else f"{cell_label(name)} has no finished runs yet.")
    extra = uncertainty_words(horizon, low, high, unit) if means else ""
    if extra:
        text = f"{text[:-1]}; {extra}."
    return {"label": cell_label(name), "horizon": horizon, "horizon_low": low,
            "horizon_high": high, "horizon_text": text, "lengths": points, **sizes}


def summarize(config: Any, rows: Sequence[dict[str, Any]], *,
              chance: float | None = None, baselines: dict[str, dict[str, Any]] | None = None,
              sizes: dict[tuple, dict[str, Any]] | None = None,
              provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per model, task and length: the best-dev (lr, weight decay) setting and, for it,
    the mean test score with its 95% t interval over the seeds that finished (clipped to
    [0, 1]); per model and task: the memory horizon, its range from the intervals, and
    its sentence. ``summary["tasks"][task]["models"]`` holds them; ``summary["cells"]``
    is the first task's, as before. ``baselines`` gives each task's label, chance and
    memoryless scores; ``sizes`` each (model, task)'s parameters and state size."""
    baselines = baselines or {}
    sizes = sizes or {}
    by_point: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        by_point.setdefault((row["cell"], row.get("task") or TASK, row["length"]), []
                            ).append(row)
    from rnnlab.experiments.models import resolve_models

    names = [e.name for e in resolve_models(config.cells, config.models)]
    tasks: dict[str, Any] = {}
    for task in config.tasks:
        base = baselines.get(task, {})
        entries = {}
        for name in names:
            points = []
            for n in config.lengths_for(task):
                found = by_point.get((name, task, n))
                if not found:
                    continue
                chosen, setting = best_setting(found)
                point = _point(n, sorted(chosen, key=lambda r: r["seed"]))
                point["chosen"] = setting
                points.append(point)
            entry = _entry(name, points, config.threshold, base.get("unit", "steps"),
                           sizes.get((name, task), {}))
            if base.get("score", "accuracy") != "accuracy":
                entry["horizon_text"] = entry["horizon_text"].replace("test accuracy",
                                                                      "test score")
            entries[name] = entry
        tasks[task] = {**base, "models": entries}
    first = tasks[config.tasks[0]]
    grid = len(config.lr_values()) * len(config.weight_decay_values())
    expected = sum(len(config.lengths_for(t)) for t in config.tasks) * len(names) \
        * config.seeds * grid
    n_failed = sum(1 for r in rows if r.get("status", OK) == FAILED)
    return {
        "experiment": "memory",
        "task": config.tasks[0],
        "tasks_run": list(config.tasks),
        "threshold": config.threshold,
        "chance": first.get("chance", chance) if chance is None else chance,
        "confidence_level": 0.95,
        "interval": ("Student-t 95% interval of the mean over seeds (n-1 degrees of "
                     "freedom), clipped to [0, 1], the range of a score; undefined (null) "
                     "with a single seed."),
        "selection": ("with several (lr, weight decay) settings, each model, task and length "
                      "reports the setting with the best mean dev score (never chosen on "
                      "test)"),
        "horizon_definition": HORIZON_DEFINITION,
        "runs": {"expected": expected, "finished": len(rows) - n_failed, "failed": n_failed,
                 "complete": len(rows) - n_failed == expected},
        "cells": first["models"],
        "tasks": tasks,
        "provenance": provenance or {},
        "config": config.asdict(),
    }


# --- curves ------------------------------------------------------------------------------
_CURVE_COLUMNS = ("step", "train_loss", "dev_loss", "dev_accuracy")
# The generic path writes the task's score as ``dev_score``; it is read as the curve's
# ``dev_accuracy`` (the dev score), the kernel's files having only the accuracy.


def load_curve(path: str | Path) -> dict[str, list[Any]] | None:
    """A run's metrics CSV as lists per quantity (``None`` where a row has no value);
    ``None`` if the file is missing, so a report can still be drawn without it."""
    path = Path(path)
    if not path.exists():
        return None
    curve: dict[str, list[Any]] = {key: [] for key in _CURVE_COLUMNS}
    for row in read_csv(path):
        if "dev_score" in row:
            row = {**row, "dev_accuracy": row["dev_score"]}
        for key in _CURVE_COLUMNS:
            curve[key].append(_number(row.get(key), int if key == "step" else float))
    return curve


def _number(raw: str | None, kind: type) -> Any:
    """A CSV cell as a number; empty or unreadable is ``None`` (a gap in the curve)."""
    try:
        return None if raw in (None, "") else kind(float(raw))
    except (ValueError, OverflowError):
        return None
