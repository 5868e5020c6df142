"""Figures of the doctor and of the gradient experiments (PNG bytes, Agg, no pyplot).

Gradient norms span many orders of magnitude, so every gradient axis is logarithmic;
exact zeros are left out of a log axis rather than drawn at an arbitrary floor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from rnnlab.report.plots import colour, png_bytes


def _figure(width: float, height: float) -> Figure:
    """A one-panel figure with fixed margins. The doctor draws its figures after every
    run, and a constrained layout would take half of their drawing time."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.9)
    return fig


def _positive(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def state_gradients(profiles: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    """``|dL/dh_t|`` against time step ``t``, one line per observed iteration."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    for i, p in enumerate(profiles):
        xs, ys = _positive(range(len(p["norms"])), p["norms"])
        ax.semilogy(xs, ys, color=colour(i), lw=1.5,
                    label=p.get("label", f"iteration {p.get('iteration', i)}"))
    ax.set_xlabel("time step t")
    ax.set_ylabel("|dL / dh_t|")
    ax.set_title(title or "gradient of the loss with respect to the state")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def grad_norm_series(series: Mapping[str, Sequence[tuple[int, float]]], title: str = "",
                     clip: float | None = None) -> bytes:
    """Per-parameter gradient norm against optimizer step."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    for i, (name, points) in enumerate(series.items()):
        xs, ys = _positive([s for s, _ in points], [v for _, v in points])
        ax.semilogy(xs, ys, color=colour(i), lw=1, label=name)
    if clip is not None:
        ax.axhline(clip, color="0.3", ls="--", lw=1, label=f"clip at {clip:g}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("L2 norm of the gradient")
    ax.set_title(title or "gradient norm per parameter")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def lag_profile(profile: Sequence[float]) -> bytes:
    """Dependence of the last output on the input ``k`` steps earlier."""
    fig = _figure(6.4, 3.4)
    ax = fig.add_subplot()
    xs, ys = _positive(range(len(profile)), profile)
    ax.semilogy(xs, ys, "-o", ms=3, color=colour(0))
    ax.set_xlabel("lag k (steps before the last output)")
    ax.set_ylabel("|d out_L / d x_(L-k)|, relative")
    ax.set_title("how far back the outputs depend on the inputs")
    ax.grid(True, which="both", alpha=0.3)
    return png_bytes(fig)


def loss_curve(losses: Sequence[tuple[int, float]]) -> bytes:
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    ax.plot([i for i, _ in losses], [v for _, v in losses], color=colour(0), lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("training loss while observed")
    ax.grid(True, alpha=0.3)
    return png_bytes(fig)


def gate_heatmap(gates: Mapping[str, Any], tokens: Sequence[str] | None = None,
                 title: str = "") -> bytes:
    """One heat map per gate: hidden unit (rows) against time step (columns)."""
    names = list(gates)
    fig = Figure(figsize=(7.5, 1.9 * len(names) + 0.6), layout="constrained")
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        values = gates[name]
        image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
        ax.set_ylabel(f"{name}\nunit")
        if tokens is not None:
            ax.set_xticks(range(len(tokens)))
            ax.set_xticklabels(tokens, fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.03)
    axes[-1].set_xlabel("time step")
    fig.suptitle(title or "LSTM gate activations")
    return png_bytes(fig)


def explosion(runs: Mapping[str, tuple[Sequence[Mapping[str, float]], float | None]],
              names: Sequence[str]) -> bytes:
    """One panel per run: the gradient norm of each named parameter at every step, with
    the clipping threshold when the run clipped (NNDL 6.2)."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, len(runs), sharey=True, squeeze=False)[0]
    for ax, (title, (rows, clip)) in zip(axes, runs.items(), strict=True):
        for i, name in enumerate(names):
            xs, ys = _positive([r["step"] for r in rows], [r[name] for r in rows])
            ys_finite = [(x, y) for x, y in zip(xs, ys, strict=True) if y < float("inf")]
            ax.semilogy([x for x, _ in ys_finite], [y for _, y in ys_finite],
                        color=colour(i), lw=1, label=f"|grad {name}|")
        if clip is not None:
            ax.axhline(clip, color="0.3", ls="--", lw=1, label=f"clip at {clip:g}")
        # A dead (saturated) network has gradients down to 1e-30; below 1e-6 nothing
        # more is learned, and the explosion above stays readable.
        ax.set_ylim(bottom=1e-6)
        ax.set_title(f"SRN, SGD: {title}")
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("L2 norm of the gradient\n(before clipping)")
    return png_bytes(fig)


def norms_by_cell(curves: Mapping[str, Sequence[float]], title: str = "") -> bytes:
    """``|dL/dh_t|`` against ``t``, one line per cell: the vanishing-gradient picture."""
    return state_gradients([{"label": name, "norms": list(norms)}
                            for name, norms in curves.items()], title)
