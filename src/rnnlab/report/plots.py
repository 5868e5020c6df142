"""Figures of the memory experiment, drawn with matplotlib's Agg backend.

Every function returns PNG bytes, so the caller decides where they go: a file
beside the report and, base64-encoded, inside the self-contained HTML. Figures
are made through :class:`matplotlib.figure.Figure` directly, never pyplot, so no
global state or display is touched and a headless machine draws them the same.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

# Colour-blind-safe (Okabe-Ito), one per cell in the order cells are listed.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000")
DPI = 110


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """``fig`` rendered to PNG bytes with Agg (no pyplot, no display)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def svg_bytes(fig: Figure) -> bytes:
    """``fig`` as SVG (for papers and slides; the report embeds the PNG)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    return buffer.getvalue()


def both(fig: Figure) -> tuple[bytes, bytes]:
    """The figure as PNG and SVG bytes."""
    return png_bytes(fig), svg_bytes(fig)


def readable_log_axis(ax: Any) -> None:
    """Plain numbers (0.05, 0.1, 1) at a few decades on a log y axis, not 10^-1.3 labels
    or a crowd of minor ticks."""
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=6))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def accuracy_vs_length(summary: Mapping[str, Any]) -> bytes:
    """The first task's score against its axis (see :func:`score_figure`), as PNG."""
    task = summary.get("task", "digitsum")
    info = summary.get("tasks", {}).get(task, {"models": summary["cells"]})
    return png_bytes(score_figure(task, info, summary))


def score_figure(task: str, info: Mapping[str, Any], summary: Mapping[str, Any]) -> Figure:
    """Mean test score against the task's axis, one line per model, its 95% interval as
    a band, each seed as a faint dot, and chance, the memoryless baseline and the
    threshold as lines."""
    fig = Figure(figsize=(8.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for i, entry in enumerate(info["models"].values()):
        points = [p for p in entry["lengths"] if p["mean"] is not None]
        if not points:
            continue
        c = colour(i)
        xs = [p["length"] for p in points]
        ax.plot(xs, [p["mean"] for p in points], "-o", color=c, lw=2, ms=5,
                label=entry["label"])
        banded = [p for p in points if p["ci_low"] is not None]
        if banded:
            ax.fill_between([p["length"] for p in banded], [p["ci_low"] for p in banded],
                            [p["ci_high"] for p in banded], color=c, alpha=0.15, lw=0)
        for p in points:
            ax.plot([p["length"]] * len(p["test_accuracies"]), p["test_accuracies"], ".",
                    color=c, alpha=0.35, ms=4)
    chance = info.get("chance", summary.get("chance"))
    if chance is not None:
        ax.axhline(chance, color="0.4", ls="--", lw=1, label=f"chance ({chance:.2f})")
    memoryless = info.get("memoryless") or {}
    if memoryless:
        xs = sorted(memoryless, key=int)
        ax.plot([int(x) for x in xs], [memoryless[x] for x in xs], color="0.25", ls="-.",
                lw=1, label="memoryless baseline")
    ax.axhline(summary["threshold"], color="0.4", ls=":", lw=1,
               label=f"threshold ({summary['threshold']:g})")
    lengths = sorted({p["length"] for e in info["models"].values() for p in e["lengths"]})
    if lengths:
        ax.set_xticks(lengths)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(info.get("axis_label") or "sequence length L (steps between the digits and "
                  "the answer)")
    ax.set_ylabel(f"test {info.get('score', 'accuracy')}")
    n_seeds = summary["config"]["seeds"]
    band = "95% interval over seeds" if n_seeds > 1 else "one seed: no interval"
    name = "DigitSum" if task == "digitsum" else task
    ax.set_title(f"{name}: mean test score against length (band: {band})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def horizon_heatmap(summary: Mapping[str, Any]) -> Figure:
    """Model x task: each cell's horizon as the share of the task's tested lengths it
    reaches (colour) and the horizon with its interval range in words (text)."""
    tasks = list(summary["tasks"])
    models = list(summary["tasks"][tasks[0]]["models"])
    fig = Figure(figsize=(1.9 * len(tasks) + 2.2, 0.6 * len(models) + 1.6),
                 layout="constrained")
    ax = fig.add_subplot()
    grid = []
    for m in models:
        row = []
        for t in tasks:
            entry = summary["tasks"][t]["models"][m]
            lengths = summary["config"]["lengths_by_task"][t]
            h = entry["horizon"]
            row.append(0.0 if h is None else (lengths.index(h) + 1) / len(lengths))
        grid.append(row)
    ax.imshow(grid, cmap="Greens", vmin=0.0, vmax=1.0, aspect="auto")
    for i, m in enumerate(models):
        for j, t in enumerate(tasks):
            e = summary["tasks"][t]["models"][m]
            # white on the darker half of the colour scale, where black is hard to read
            ax.text(j, i, horizon_words(e), ha="center", va="center", fontsize=8,
                    color="white" if grid[i][j] > 0.6 else "black")
    ax.set_xticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_yticks(range(len(models)),
                  [summary["tasks"][tasks[0]]["models"][m]["label"] for m in models],
                  fontsize=8)
    ax.set_title("Memory horizon (steps; range from the 95% intervals)", fontsize=10)
    return fig


def horizon_words(entry: Mapping[str, Any]) -> str:
    """``"20 (15–30)"``, ``"none"``, ``"≥ 35"``: a horizon and its interval range."""
    h, low, high = entry["horizon"], entry.get("horizon_low"), entry.get("horizon_high")
    lengths = [p["length"] for p in entry["lengths"]]
    text = "none" if h is None else (f"≥ {h}" if lengths and h == lengths[-1] else str(h))
    if (low, high) != (h, h) and lengths:
        text += f" ({'none' if low is None else low}–{'none' if high is None else high})"
    return text


def training_curves(label: str, curves: Mapping[int, Sequence[Mapping[str, Any]]],
                    index: int = 0) -> bytes:
    """:func:`curves_figure` as PNG bytes."""
    return png_bytes(curves_figure(label, curves, index))


def curves_figure(label: str, curves: Mapping[int, Sequence[Mapping[str, Any]]],
                  index: int = 0) -> Figure:
    """One cell's training: a column per length, training loss on top and dev
    accuracy below, one line per seed.

    ``curves`` maps each length to a list of per-seed curves, each a mapping with
    ``step``, ``train_loss`` and ``dev_accuracy`` lists (``None`` where missing).
    """
    lengths = sorted(curves)
    n = max(1, len(lengths))
    width = 1.9 * n + 0.8
    fig = Figure(figsize=(width, 4.2))
    # Fixed margins: constrained layout costs seconds on a grid of small log-scale panels.
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, bottom=0.12, top=0.86,
                        wspace=0.12, hspace=0.22)
    axes = fig.subplots(2, n, sharex=False, sharey="row", squeeze=False)
    c = colour(index)
    for j, length in enumerate(lengths):
        top, bottom = axes[0][j], axes[1][j]
        for seed_curve in curves[length]:
            for ax, key in ((top, "train_loss"), (bottom, "dev_accuracy")):
                pts = [(s, v) for s, v in zip(seed_curve["step"], seed_curve[key], strict=True)
                       if v is not None]
                if pts:
                    ax.plot([s for s, _ in pts], [v for _, v in pts], color=c, lw=1,
                            alpha=0.75)
        top.set_title(f"L = {length}", fontsize=9)
        top.set_yscale("log")
        readable_log_axis(top)
        bottom.set_ylim(0.0, 1.02)
        bottom.set_xlabel("step", fontsize=8)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss", fontsize=8)
    axes[1][0].set_ylabel("dev score", fontsize=8)
    fig.suptitle(f"{label}: training loss and dev score (one line per seed)", fontsize=10)
    return fig
