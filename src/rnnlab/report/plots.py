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
from matplotlib.ticker import NullLocator

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


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def accuracy_vs_length(summary: Mapping[str, Any]) -> bytes:
    """Mean test accuracy against length, one line per cell, its 95% interval as a
    band, each seed as a faint dot, and the chance and threshold levels as lines."""
    fig = Figure(figsize=(8.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for i, info in enumerate(summary["cells"].values()):
        points = info["lengths"]
        if not points:
            continue
        c = colour(i)
        xs = [p["length"] for p in points]
        ax.plot(xs, [p["mean"] for p in points], "-o", color=c, lw=2, ms=5,
                label=info["label"])
        banded = [p for p in points if p["ci_low"] is not None]
        if banded:
            # The interval can pass 0 or 1 with few seeds; accuracy cannot.
            ax.fill_between([p["length"] for p in banded],
                            [max(0.0, p["ci_low"]) for p in banded],
                            [min(1.0, p["ci_high"]) for p in banded],
                            color=c, alpha=0.15, lw=0)
        for p in points:
            ax.plot([p["length"]] * len(p["test_accuracies"]), p["test_accuracies"], ".",
                    color=c, alpha=0.35, ms=4)
    if summary.get("chance") is not None:
        ax.axhline(summary["chance"], color="0.4", ls="--", lw=1,
                   label=f"chance ({summary['chance']:.2f})")
    ax.axhline(summary["threshold"], color="0.4", ls=":", lw=1,
               label=f"threshold ({summary['threshold']:g})")
    lengths = sorted({p["length"] for info in summary["cells"].values()
                      for p in info["lengths"]})
    ax.set_xticks(lengths)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("sequence length L (steps between the digits and the answer)")
    ax.set_ylabel("test accuracy")
    n_seeds = summary["config"]["seeds"]
    band = "95% interval over seeds" if n_seeds > 1 else "one seed: no interval"
    ax.set_title(f"DigitSum: mean test accuracy against length (band: {band})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return png_bytes(fig)


def training_curves(label: str, curves: Mapping[int, Sequence[Mapping[str, Any]]],
                    index: int = 0) -> bytes:
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
        top.yaxis.set_minor_locator(NullLocator())
        bottom.set_ylim(0.0, 1.02)
        bottom.set_xlabel("step", fontsize=8)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss", fontsize=8)
    axes[1][0].set_ylabel("dev accuracy", fontsize=8)
    fig.suptitle(f"{label}: training loss and dev accuracy (one line per seed)", fontsize=10)
    return png_bytes(fig)
