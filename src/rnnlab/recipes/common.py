"""What every recipe shares: settings with overrides, the result record, files.

A recipe's hyper-parameters are a frozen dataclass whose defaults are the seed's
values; ``--fast`` swaps in a few smaller ones (so the tests run it end to end in
seconds) and the user may override any field by name. Every recipe writes
``summary.json`` (its settings, numbers and time, so a result can be traced to
what made it), a metrics CSV, its PNG plots and a ``README.md``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from matplotlib.figure import Figure

from rnnlab.errors import RnnlabError
from rnnlab.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from rnnlab.report.plots import PALETTE, png_bytes

# The report's palette, by role: input, target, then one per model (without the yellow,
# which a thin line on white does not show).
INPUT_COLOUR, TARGET_COLOUR = PALETTE[0], PALETTE[1]
MODEL_COLOURS = tuple(c for c in PALETTE[2:] if c != "#F0E442")

SettingsT = TypeVar("SettingsT")


def resolve_settings(cls: type, fast: bool, fast_changes: Mapping[str, Any],
                     overrides: Mapping[str, Any]) -> Any:
    """``cls()`` with the fast changes (if ``fast``) and then the user's overrides."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RnnlabError(f"unknown recipe setting(s) {', '.join(unknown)}; "
                          f"known settings: {', '.join(sorted(known))}")
    values = {**(dict(fast_changes) if fast else {}), **overrides}
    settings = cls(**values)
    # Every count, size, rate and span of a recipe is positive; only the seed may be 0.
    for f in dataclasses.fields(cls):
        value = getattr(settings, f.name)
        if f.name != "seed" and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not value > 0:
                raise RnnlabError(f"recipe setting {f.name} must be positive, got {value}")
    return settings


@dataclass
class RecipeResult:
    """The outcome of one recipe run.

    ``score`` is the headline test number of the recipe's main model (``model``:
    the fix, where a recipe compares the seed's setup with a fix), in ``metric``
    (accuracy: higher is better; mse: lower is better), to be read against
    ``baseline``, the memoryless model's score on the same test data.
    """

    name: str
    out: Path
    model: str
    metric: str
    score: float
    baseline: float
    chance: float
    seconds: float
    numbers: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def beats_baseline(self) -> bool:
        if self.metric == "accuracy":
            return self.score > self.baseline
        return self.score < self.baseline

    def asdict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["out"] = str(self.out)
        values["beats_baseline"] = self.beats_baseline
        return values


class Stopwatch:
    """Seconds since creation (``perf_counter``), for the time a recipe reports."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 2)


def start(cls: type[SettingsT], fast: bool, fast_changes: Mapping[str, Any],
          overrides: Mapping[str, Any], out: str | Path) -> tuple[SettingsT, Path, Stopwatch]:
    """The resolved settings, the output folder (created) and the stopwatch of the run.

    Bad settings are refused before anything is written.
    """
    settings: SettingsT = resolve_settings(cls, fast, fast_changes, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return settings, out, Stopwatch()


def figure(width: float = 9.0, height: float = 4.0, rows: int = 1,
           cols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A figure and its axes, made without pyplot so nothing global is touched."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, axes


def save_figure(fig: Figure, path: Path) -> str:
    """Write ``fig`` as a PNG atomically; returns the file name."""
    atomic_write_bytes(path, png_bytes(fig))
    return path.name


def finish(result: RecipeResult, settings: Any, fast: bool, readme: str) -> RecipeResult:
    """Write ``summary.json`` and ``README.md`` and list every file the run wrote."""
    out = result.out
    written = {p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    result.files = sorted(written | {"README.md", "summary.json"})
    atomic_write_text(out / "README.md", readme.strip() + "\n")
    atomic_write_json(out / "summary.json", {
        "recipe": result.name, "fast": fast, "settings": dataclasses.asdict(settings),
        "torch": torch.__version__, **result.asdict()})
    return result
