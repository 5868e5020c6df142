"""From observations to findings: each check turns numbers into a verdict.

The checks err on the side of silence. A finding is raised only on evidence that a
correct script cannot produce (a state handed from one iteration to a repeated or
unrelated batch, a nonzero gradient between two sequences of a batch, an exactly zero
gradient to the past); weaker signs become warnings with their numbers, and what was
checked and found fine is listed as notes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from rnnlab.doctor import probes
from rnnlab.doctor.findings import Finding, Location, Report
from rnnlab.doctor.hooks import Observations, RootCall, state_grad_norms

VANISHING = 1e-6  # |dL/dh_0| / |dL/dh_last| below this: no learning signal reaches the start
EXPLODING = 1e6  # ... above this: the start of the sequence dominates every update


def diagnose(obs: Observations, target: str, *, batch_dim: int | None = None,
             root: RootCall | None = None, stopped: str = "") -> Report:
    """All checks on what a watcher saw. ``batch_dim`` is given when the caller knows
    which axis holds the sequences (the Python API); otherwise the data decides."""
    report = Report(target=target, steps=obs.steps or obs.backward_calls,
                    seconds=round(obs.seconds, 3), stopped=stopped,
                    modules=list(obs.modules.values()))
    report.series["loss"] = obs.losses
    if not obs.modules:
        report.add(Finding("no-recurrent-module", "info",
                           "no torch.nn.RNN/LSTM/GRU or rnnlab Recurrent call was seen",
                           "the checks of state, axes and gradients through time need one"))
    _check_nonfinite(obs, report)
    _check_carries(obs, report)
    root = root or obs.root
    mixed = False
    if root is not None:
        mixed = _check_axes(obs, root, batch_dim, report)
        if not mixed:
            _check_past(obs, root, batch_dim, report)
    _check_gradients(obs, report)
    return report


# --- non-finite loss ----------------------------------------------------------------------
def _check_nonfinite(obs: Observations, report: Report) -> None:
    if not obs.nonfinite:
        return
    it, value, where = obs.nonfinite[0]
    finite = [v for _, v in obs.losses if math.isfinite(v)]
    before = f"; the last finite loss was {finite[-1]:.4g}" if finite else ""
    report.add(Finding(
        "non-finite-loss", "error", "the loss became non-finite",
        f"loss = {value} at iteration {it} ({len(obs.nonfinite)} non-finite of "
        f"{len(obs.losses)} losses){before}",
        "Lower the learning rate and clip gradients before the step "
        "(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)); check the data for nan.",
        {"iteration": it, "count": len(obs.nonfinite)}, where[:1]))


# --- state carried across iterations ---------------------------------------------------
def _check_carries(obs: Observations, report: Report) -> None:
    if not obs.carries:
        return
    by_kind: dict[str, list] = {}
    for carry in obs.carries:
        by_kind.setdefault(carry.kind, []).append(carry)
    first = obs.carries[0]
    iterations = len({c.iteration for c in obs.carries})
    how = ("sharing its memory: a .data or .detach() of it" if first.how == "same storage"
           else "a copy of its values")
    where = first.where[:1] + _detach_lines(first.where)
    head = (f"in {iterations} iteration(s) the initial state given to the recurrent layer "
            f"was the final state of a call in an earlier iteration, {how}")
    detach = where[1:2]
    if detach:
        name = detach[0].code.split("=")[0].strip()
        example = f"`{name} = None` in place of `{detach[0].code.strip().split('#')[0].strip()}`"
    else:
        example = "`h_state = None` in place of `h_state = h_state.data`"
    fresh = ("Start every batch of independent sequences from a fresh state: pass None (or "
             f"zeros) instead of the previous final state, e.g. {example}.")
    numbers: dict[str, Any] = {"iterations": iterations, "how": first.how}
    if "repeated" in by_kind:
        c = by_kind["repeated"][0]
        report.add(Finding(
            "state-carried", "error",
            "hidden state carried across iterations into the same sequences",
            f"{head}; and the input was the very same sequences again (call {c.index} "
            f"repeats call {c.previous}): the state at the end of each sequence becomes the "
            "start of the next pass, so the network learns to ignore the start of a sequence",
            fresh, {**numbers, "kind": "repeated"}, where))
    elif "unrelated" in by_kind:
        c = by_kind["unrelated"][0]
        n = c.numbers
        report.add(Finding(
            "state-carried", "error",
            "hidden state carried across iterations into unrelated sequences",
            f"{head}; the new batch does not continue the previous one: its first step is "
            f"{n['constant_boundary_error']:.3g} away from the previous last step, while a "
            f"step within a sequence moves {n['constant_typical_error']:.3g} and other rows "
            f"are {n['constant_error_to_other']:.3g} away",
            fresh, {**numbers, "kind": "unrelated", **n}, where))
    elif "undecidable" in by_kind and "continuous" not in by_kind:
        report.add(Finding(
            "state-carried", "warning",
            "hidden state carried across iterations; the doctor cannot tell if the batches "
            "continue each other",
            f"{head}; the input values cannot show whether each batch continues the "
            "previous one",
            "If the batches are consecutive chunks of the same streams this is truncated BPTT "
            "and fine. Otherwise " + fresh[0].lower() + fresh[1:],
            {**numbers, "kind": "undecidable"}, where))
    else:
        # Continuous wherever the values can tell: undecidable chunks (the shorter last
        # chunk of a stream, flat stretches) are taken to belong to the same stream.
        n = by_kind["continuous"][0].numbers
        report.add(Finding(
            "truncated-bptt", "ok",
            "state carried across iterations over one continuous stream: truncated BPTT, fine",
            f"{head}; each chunk continues where the previous one ended ({_continuation(n)}), "
            "so the state belongs to the same stream and detaching it bounds "
            "backpropagation deliberately",
            "", {**numbers, "kind": "continuous", **n}, where[:1]))


def _continuation(n: dict[str, float]) -> str:
    if "next_step_target" in n:
        return ("the last target of the previous chunk is the first input of this one, and "
                "the targets are the inputs one step ahead: next-step prediction over a stream")
    for name, what in (("constant", "the last value"), ("linear", "extending the last step")):
        if f"{name}_boundary_error" in n:
            b, t, o = (n[f"{name}_{k}"] for k in ("boundary_error", "typical_error",
                                                   "error_to_other"))
            if b < 0.25 * o:
                return (f"predicting the first value by {what} errs by {b:.3g}, as inside a "
                        f"chunk ({t:.3g}), against {o:.3g} for other positions")
    return ""


def _detach_lines(where: list[Location]) -> list[Location]:
    """Lines of the script that re-assign the state passed at ``where`` from its .data
    or .detach(): that is the line to change."""
    if not where:
        return []
    call = where[0]
    inside = call.code[call.code.find("(") + 1:] if "(" in call.code else ""
    names = set(re.findall(r"[A-Za-z_]\w*", inside))
    try:
        lines = Path(call.file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for i, line in enumerate(lines, start=1):
        m = re.match(r"\s*([A-Za-z_]\w*)\s*=.*\.(data\b|detach\s*\()", line)
        if m and m.group(1) in names:
            found.append(Location(call.file, i, line))
    return found[:2]


# --- batch and time axes --------------------------------------------------------------
def _check_axes(obs: Observations, root: RootCall, batch_dim: int | None,
                report: Report) -> bool:
    index = probes.sequence_arg(root.args)
    if index is None:
        return False
    x = root.args[index]
    reasons: list[str] = []
    if batch_dim is None:
        target = obs.last_loss_call[1] if obs.last_loss_call else None
        batch_dim, reasons = probes.batch_dim_evidence(x, obs.loader_batch_sizes, target)
        if batch_dim is None:
            report.add(Finding(
                "axes-unchecked", "info", "could not tell which axis holds the sequences",
                "no DataLoader, per-sequence target or smooth signal shows it"
                + (f" ({'; '.join(reasons)})" if reasons else "")
                + "; the batch/time check was skipped", ""))
            return False
    else:
        reasons = [f"axis {batch_dim} holds the sequences (given)"]
    result = probes.cross_sequence_probe(root.module, root.args, root.kwargs, batch_dim)
    if result is None:
        return False
    n = int(x.shape[batch_dim])
    if result["share"] <= probes.DEPENDENCE:
        report.add(Finding(
            "axes", "ok", "sequences of a batch are independent",
            f"the output of a sequence has no gradient from the other {n - 1} sequences of "
            f"the batch (axis {batch_dim} of input {tuple(x.shape)} is the batch: "
            f"{'; '.join(reasons)})", "", {"share": result["share"]}))
        return False
    cause, fix = _axes_cause(root, n)
    report.add(Finding(
        "axes-mixed", "error", "batch and time axes are mixed: sequences leak into each other",
        f"{result['share']:.0%} of the input gradient of sequence {result['sequence']}'s output "
        f"comes from {result['other_sequences']} other sequences of the batch of "
        f"{result['batch']} (it must be 0%); the batch is axis {batch_dim} of the input "
        f"{tuple(x.shape)} because {'; '.join(reasons)}. Likely cause: {cause}",
        fix, {**result, "batch_dim": batch_dim}, root.where[:2]))
    return True


def _axes_cause(root: RootCall, n: int) -> tuple[str, str]:
    shape = root.recurrent_input_shape
    name = type(root.recurrent).__name__
    if shape is not None and len(shape) >= 2:
        if not root.batch_first and shape[0] == n and shape[1] != n:
            return (f"{name} has batch_first=False (the default), so it reads axis 0 of its "
                    f"input {tuple(shape)} as time, but axis 0 holds the {n} sequences",
                    "Create the layer with batch_first=True, or pass x.transpose(0, 1) so "
                    "that it receives (L, N, H_in); the output then comes back time-first.")
        if root.batch_first and shape[1] == n and shape[0] != n:
            return (f"{name} has batch_first=True, but its input {tuple(shape)} has the "
                    f"{n} sequences on axis 1",
                    "Remove the transpose before the layer (or set batch_first=False), so that "
                    "axis 0 of its input is the batch.")
    return ("a reshape or view moves values between sequences (view/reshape do not swap "
            "axes)", "Swap axes with transpose/permute, not view/reshape, and check the shape "
            "the recurrent layer receives against (N, L, H_in) or (L, N, H_in).")


# --- the model ignores the past ---------------------------------------------------------
def _check_past(obs: Observations, root: RootCall, batch_dim: int | None,
                report: Report) -> None:
    index = probes.sequence_arg(root.args)
    if index is None:
        return
    x = root.args[index]
    shape = root.recurrent_input_shape
    if shape is not None and tuple(x.shape[:2]) == shape[:2]:
        # Time is what the recurrent layer steps along; with the axes checked above, or
        # not checkable, that is the axis along which the past must reach the output.
        batch_dim = 0 if root.batch_first else 1
    elif batch_dim is None:
        target = obs.last_loss_call[1] if obs.last_loss_call else None
        batch_dim, _ = probes.batch_dim_evidence(x, obs.loader_batch_sizes, target)
        batch_dim = 0 if batch_dim is None else batch_dim
    profile = probes.lag_profile(root.module, root.args, root.kwargs, batch_dim)
    report.series["lag_profile"] = profile
    if len(profile) < 2:
        return
    past = max(profile[1:])
    horizon = max((k for k, v in enumerate(profile) if v >= 1e-3), default=0)
    if past <= 1e-12:
        shape = root.recurrent_input_shape
        length = x.shape[1 - batch_dim]
        if shape is not None and len(shape) == 3 and shape[1 if root.batch_first else 0] == 1:
            cause = (f"the recurrent layer receives sequences of length 1 (input {shape}): "
                     "every time step is a sequence of its own, started from a fresh state")
            fix = (f"Give the layer the whole sequences, shaped (N, {length}, H_in) with "
                   "batch_first=True, not one step per row.")
        else:
            cause = "nothing connects an output to the inputs before it"
            fix = ("Feed the whole sequence to the recurrent layer and read its outputs; do not "
                   "reset or replace the state inside the sequence.")
        report.add(Finding(
            "ignores-past", "error", "the model cannot use the past",
            f"the last output has exactly zero gradient with respect to every earlier input "
            f"(lags 1..{len(profile) - 1}; lag 0 = 1): {cause}",
            fix, {"max_past_dependence": past}, root.where[:2]))
        return
    numbers: dict[str, Any] = {"horizon": horizon, "max_past_dependence": past,
                               "lag1": profile[1]}
    baseline = None
    if obs.last_loss_call is not None:
        baseline = probes.memoryless_baseline(x, obs.last_loss_call[1], batch_dim)
    recent = [v for _, v in obs.metric[-10:]]
    if baseline and recent and obs.metric_name == baseline["metric"]:
        score = sum(recent) / len(recent)
        numbers.update(model=score, memoryless=baseline["memoryless"], chance=baseline["chance"])
        report.series["baseline"] = numbers
        higher = baseline["metric"] == "accuracy"
        margin = (score - baseline["memoryless"]) if higher else (baseline["memoryless"] - score)
        room = (1 - baseline["memoryless"]) if higher else baseline["memoryless"]
        useful = (baseline["chance"] < baseline["memoryless"] if not higher
                  else True) and room > 0.02
        # Far below the memoryless score the model has not even learned the current
        # input yet: too early to say anything about memory.
        level = -0.03 < margin < 0.05 * max(room, 1e-12)
        if useful and level and _plateau(obs.losses):
            report.add(Finding(
                "no-better-than-memoryless", "warning",
                "the model predicts no better than a model without memory",
                f"training {baseline['metric']} {score:.3f} over the last {len(recent)} "
                f"iterations; a model that sees only the current input gets "
                f"{baseline['memoryless']:.3f} on the same batch, chance is "
                f"{baseline['chance']:.3f}, and the loss has stopped falling; the last "
                f"output depends on inputs up to {horizon} steps back",
                "Look for a state carried between sequences, mixed axes or vanishing gradients "
                "(above); an LSTM or GRU keeps information longer than an Elman RNN.",
                numbers))
            return
    report.add(Finding(
        "uses-past", "ok", "the outputs depend on earlier inputs",
        f"the last output's gradient reaches inputs up to {horizon} steps back "
        f"(lag 1: {profile[1]:.3g} of lag 0)"
        + (f"; training {obs.metric_name} {numbers['model']:.3f} against memoryless "
           f"{numbers['memoryless']:.3f} and chance {numbers['chance']:.3f}"
           if "model" in numbers else ""), "", numbers))


def _plateau(losses: list[tuple[int, float]]) -> bool:
    """Training has happened and stopped improving: the loss fell by a tenth or more
    from its start and the last fifth of the steps is no lower than the fifth before.

    A loss that has not started to fall is not a plateau: judging a model that has not
    trained yet would be a false alarm on every correct script stopped early.
    """
    values = [v for _, v in losses if math.isfinite(v)]
    if len(values) < 30:
        return False
    k = max(5, len(values) // 5)
    first = sum(values[:k]) / k
    before = sum(values[-2 * k:-k]) / k
    last = sum(values[-k:]) / k
    return (first - last) >= 0.1 * abs(first) and (before - last) <= 0.02 * abs(before)


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
def _check_gradients(obs: Observations, report: Report) -> None:
    profiles = []
    for record in obs.state_grads:
        norms = state_grad_norms(record)
        if len(norms) >= 2 and any(v > 0 for v in norms):
            profiles.append({"iteration": record["iteration"], "norms": norms})
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
    last = profiles[-1]["norms"]
    length = len(last)
    end = last[-1] if last[-1] > 0 else max(last)
    ratio = last[0] / end
    numbers = {"steps": length, "first": last[0], "last": last[-1], "ratio": ratio}
    if length >= 10 and ratio < VANISHING and not exploded:
        # after an explosion saturates the units, gradients through time die as a
        # consequence; the explosion above is what to fix
        report.add(Finding(
            "vanishing-gradient", "warning", "gradients vanish through time",
            f"|dL/dh| at the first of {length} steps is {ratio:.2g} of its value at the last "
            f"step ({last[0]:.3g} against {last[-1]:.3g}): the start of a sequence gets "
            "almost no learning signal",
            "Use an LSTM or GRU (or a residual SRN), shorten the dependency, or initialise the "
            "recurrent weights orthogonally.", numbers))
    elif length >= 10 and ratio > EXPLODING and not obs.clipped and not exploded:
        report.add(Finding(
            "exploding-gradient", "warning", "gradients explode through time",
            f"|dL/dh| at the first of {length} steps is {ratio:.2g} times its value at the "
            "last step",
            "Clip gradients (torch.nn.utils.clip_grad_norm_) and lower the learning rate or "
            "the scale of the recurrent weights.", numbers))
    elif not exploded:
        report.add(Finding(
            "gradient-through-time", "ok", "gradients through time are finite and bounded",
            f"|dL/dh| over {length} steps goes from {last[0]:.3g} at the first step to "
            f"{last[-1]:.3g} at the last (ratio {ratio:.3g})", "", numbers))
