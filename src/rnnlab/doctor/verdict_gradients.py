"""Gradients through time and per parameter: explosion, vanishing and non-finite
gradients, each judged against what is normal for the cell and the length (a freshly
initialised twin of the layer, :func:`rnnlab.doctor.replay.reference_norms`)."""

from __future__ import annotations

import math
from typing import Any

from rnnlab.doctor import replay
from rnnlab.doctor.findings import Finding, Report
from rnnlab.doctor.records import Observations

VANISHING = 1e-6  # |dL/dh_0| / |dL/dh_last| below this: no learning signal reaches the start
EXPLODING = 1e6  # ... above this: the start of the sequence dominates every update
ABNORMAL = 1e3  # ... and this many times further from 1 than a freshly initialised layer

def _loss_rise(losses: list[tuple[int, float]]) -> float:
    """The highest mean loss over a tenth of the steps, relative to the first losses."""
    values = [v for _, v in losses if math.isfinite(v)]
    if len(values) < 10:
        return 0.0
    start = sorted(values[:5])[2]
    k = max(3, len(values) // 10)
    windows = [sum(values[i:i + k]) / k for i in range(0, len(values) - k + 1, k)]
    return max(windows, default=0.0) / start if start > 0 else 0.0


# --- gradients through time and per parameter --------------------------------------------
def check_gradients(obs: Observations, report: Report) -> None:
    profiles, records = [], []
    for record in obs.state_grads:
        norms = replay.state_grad_norms(record)
        if len(norms) >= 2 and any(v > 0 for v in norms):
            profiles.append({"iteration": record["iteration"], "norms": norms})
            records.append(record)
    report.series["state_gradients"] = profiles
    report.series["grad_norms"] = obs.grad_norms
    bad = [(name, s) for name, series in obs.grad_norms.items() for s, v in series
           if not math.isfinite(v)]
    if bad:
        report.add(Finding(
            "exploding-gradient", "error", "gradients became non-finite",
            f"the gradient of {bad[0][0]} was not finite at step {bad[0][1]}",
            "Clip gradients before optimizer.step() "
            "(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)) and lower the "
            "learning rate.", {"parameter": bad[0][0], "step": bad[0][1]}))
        return
    # A gradient 100 times its median alone is also what a loss falling from 1.4 to 0.04
    # looks like; an explosion is a spike *and* a loss that climbs instead of falling.
    rise = _loss_rise(obs.losses)
    spikes = []
    for name, series in obs.grad_norms.items():
        values = sorted(v for _, v in series)
        if len(values) >= 5:
            median = values[len(values) // 2]
            if values[-1] > 10 and values[-1] > 100 * max(median, 1e-12):
                spikes.append((name, values[-1], median))
    exploded = bool(spikes) and rise > 1.5 and not obs.clipped
    if exploded:
        name, top, median = max(spikes, key=lambda s: s[1] / max(s[2], 1e-12))
        report.add(Finding(
            "exploding-gradient", "warning", "gradient norms explode during training",
            f"the gradient norm of {name} reached {top:.3g}, {top / max(median, 1e-12):.0f} "
            f"times its median {median:.3g} over {len(obs.grad_norms[name])} steps, and the "
            f"loss climbed to {rise:.1f} times its starting level instead of falling",
            "Clip gradients before optimizer.step() "
            "(torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)) and lower the "
            "learning rate; with a loss summed over the batch, the step is batch-size times "
            "larger than with the mean.",
            {"parameter": name, "max": top, "median": median, "loss_rise": rise}))
    if not profiles:
        return
    record, last = records[-1], profiles[-1]["norms"]
    length = len(last)
    end = last[-1] if last[-1] > 0 else max(last)
    ratio = last[0] / end
    kind = record["kind"]
    numbers: dict[str, Any] = {"steps": length, "first": last[0], "last": last[-1],
                               "ratio": ratio, "cell": kind}
    reference = replay.reference_norms(record) if record.get("x") is not None else None
    normal = ""
    ref_ratio = None
    if reference and reference[-1] > 0:
        ref_ratio = reference[0] / reference[-1]
        numbers["fresh_ratio"] = ref_ratio
        report.series["state_gradients_fresh"] = reference
        normal = (f"; a freshly initialised {_cell_name(kind)} of the same size on the same "
                  f"batch and loss gives {ref_ratio:.2g}")
    far = ref_ratio is not None and (ratio < ref_ratio / ABNORMAL if ratio < 1
                                     else ratio > ref_ratio * ABNORMAL)
    if length >= 10 and ratio < VANISHING and far and not exploded:
        # after an explosion saturates the units, gradients through time die as a
        # consequence; the explosion above is what to fix
        report.add(Finding(
            "vanishing-gradient", "warning", "gradients vanish through time",
            f"|dL/dh| at the first of {length} steps is {ratio:.2g} of its value at the last "
            f"step ({last[0]:.3g} against {last[-1]:.3g}){normal}: training has made it far "
            "worse than normal, and the start of a sequence gets almost no learning signal",
            _vanishing_fix(kind), numbers))
    elif length >= 10 and ratio > EXPLODING and far and not obs.clipped and not exploded:
        report.add(Finding(
            "exploding-gradient", "warning", "gradients explode through time",
            f"|dL/dh| at the first of {length} steps is {ratio:.2g} times its value at the "
            f"last step{normal}",
            "Clip gradients (torch.nn.utils.clip_grad_norm_) and lower the learning rate or "
            "the scale of the recurrent weights.", numbers))
    elif not exploded:
        report.add(Finding(
            "gradient-through-time", "ok",
            "gradients through time are finite and " + (
                "as a freshly initialised layer's" if ref_ratio is not None else "measured"),
            f"|dL/dh| over {length} steps goes from {last[0]:.3g} at the first step to "
            f"{last[-1]:.3g} at the last (ratio {ratio:.3g}){normal}"
            + ("" if ref_ratio is not None else
               "; no freshly initialised twin could be measured to compare with"), "",
            numbers))


def _cell_name(kind: str) -> str:
    return {"srn": "Elman RNN", "lstm": "LSTM", "gru": "GRU"}.get(kind, kind)


def _vanishing_fix(kind: str) -> str:
    if kind == "srn":
        return ("Use an LSTM or GRU (or a residual SRN), shorten the dependency, or initialise "
                "the recurrent weights orthogonally.")
    return ("Lower the learning rate and clip gradients: the gates have saturated. For an "
            "LSTM, initialise the forget-gate bias to 1 so the cell state carries the "
            "gradient; shorter chunks (truncated BPTT) also bound the path.")
