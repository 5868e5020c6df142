"""From observations to findings: each check turns numbers into a verdict.

The checks err on the side of silence. A finding is raised only on evidence that a
correct script cannot produce (a state handed from one iteration to a repeated or
unrelated batch, a nonzero gradient between two sequences of a batch, an exactly zero
gradient to the past); weaker signs become warnings with their numbers, and what was
checked and found fine is listed as notes.
"""

from __future__ import annotations

import math
from typing import Any

from rnnlab.doctor import carry as carries
from rnnlab.doctor import probes
from rnnlab.doctor.findings import Finding, Report
from rnnlab.doctor.records import Observations, RootCall
from rnnlab.doctor.source import assignment_lines, call_argument
from rnnlab.doctor.verdict_gradients import check_gradients
from rnnlab.doctor.verdict_state import check_carries


def diagnose(obs: Observations, target: str, *, batch_dim: int | None = None,
             root: RootCall | None = None, stopped: str = "",
             budget_stopped: bool = False) -> Report:
    """All checks on what a watcher saw. ``batch_dim`` is given when the caller knows
    which axis holds the sequences (the Python API); otherwise the data decides.
    Every check that ran leaves a finding or an ``[ok]`` note; one that could not run
    says so, and a run in which nothing could be checked is not a clean bill."""
    steps = obs.steps if obs.step_started else obs.backward_calls
    report = Report(target=target, steps=steps, seconds=round(obs.seconds, 3),
                    stopped=stopped, modules=list(obs.modules.values()))
    report.series["loss"] = obs.losses
    report.series["no_optimizer"] = not obs.step_started
    if obs.in_step and obs.step_started:
        report.stopped += f" (inside optimizer step {obs.steps + 1}, not counted)"
    _check_nonfinite(obs, report)
    check_carries(obs, report)
    given = root is not None
    root = root or obs.root
    mixed = False
    if root is not None:
        mixed = _check_axes(obs, root, batch_dim, report)
        if not mixed:
            mixed = _check_layout(root, report)
        if not mixed:
            _check_past(obs, root, batch_dim, report)
    check_gradients(obs, report)
    _check_coverage(obs, root, report, training=not given)
    return report


def _check_coverage(obs: Observations, root: RootCall | None, report: Report,
                    training: bool) -> None:
    """Say what could not be checked; with nothing checked there is no clean bill."""
    if not obs.modules:
        report.add(Finding(
            "unchecked", "warning", "no recurrent layer or cell ran: nothing was checked",
            f"in {report.steps} {report.step_unit} no torch.nn.RNN/LSTM/GRU, "
            "RNNCell/LSTMCell/GRUCell or rnnlab layer or cell was called, so the checks of "
            "state, axes, use of the past and gradients through time did not run",
            "Run the doctor on the script that trains the recurrent network (options of "
            "the script go after its name), or use rnnlab.doctor.check(model, batch, loss) "
            "on the model itself.", {}))
        return
    if training and report.steps == 0 and obs.backward_calls == 0:
        report.add(Finding(
            "unchecked", "warning", "the script trained nothing while it was watched",
            f"the recurrent layer ran {obs.calls} time(s) but no backward() or optimizer "
            f"step happened ({report.stopped or 'stopped'}): the checks that need training "
            "(state across iterations, gradients through time) did not run",
            "Let the script reach its training loop (a larger --max-seconds), or check the "
            "model directly with rnnlab.doctor.check(model, batch, loss).", {}))
    if root is None:
        report.add(Finding(
            "probes-skipped", "info", "axes and use of the past were not probed",
            "the recurrent cell is driven from the script's top level, outside any module, "
            "so there is no model to probe with a whole batch", ""))


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
    if shape is not None and len(shape) == 2 and shape[0] == n:
        state = (f" and its initial state {root.state_shapes[0]} has no batch axis either"
                 if root.state_shapes and len(root.state_shapes[0]) == 2 else "")
        return (f"{name} receives a 2-D input {tuple(shape)}, which torch reads as ONE "
                f"unbatched sequence of {shape[0]} steps{state}: it runs along the {n} "
                "samples of the batch as if they were time",
                "Give the layer a batch axis: the input (N, L, H_in) with batch_first=True "
                "(x.unsqueeze(1) for one step per sample) and an initial state of shape "
                "(num_layers, N, H) (or None).")
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


# --- the data's own layout ----------------------------------------------------------------
def _check_layout(root: RootCall, report: Report) -> bool:
    """Axes mixed in the data, before the model: the numbers the layer receives form
    smooth sequences only when read in the other layout (``view(L, N, 1)`` of ``(N, L)``
    data where a transpose was needed). The gradient probe cannot see this: the model
    itself mixes nothing."""
    x = root.recurrent_input
    if x is None or x.dim() != 3 or not x.dtype.is_floating_point or x.shape[-1] > 8:
        return False
    if carries.as_tokens(x) is not x:
        return False
    time_dim = 1 if root.batch_first else 0
    a, b = int(x.shape[0]), int(x.shape[1])
    if min(a, b) < 3 or a == b:
        return False
    xf = x.detach().double()
    along_time = float(xf.diff(dim=time_dim).abs().mean())
    along_batch = float(xf.diff(dim=1 - time_dim).abs().mean())
    other = xf.reshape(b, a, -1)  # the same memory read in the other layout
    other_time = float(other.diff(dim=1 - time_dim).abs().mean())
    numbers = {"step_along_time": along_time, "step_along_batch": along_batch,
               "step_along_time_other_layout": other_time}
    if along_time == 0 or not other_time < 0.4 * along_time:
        return False
    layout = "(N, L, H_in)" if root.batch_first else "(L, N, H_in)"
    where = root.where[:1]
    for loc in root.where:
        found = call_argument(loc.code, 0)
        if found is not None and found[1].isidentifier():
            made = assignment_lines(loc.file, found[1], r"\.(view|reshape)\s*\(")
            if made:
                where = [loc, *made[-1:]]
                break
    report.add(Finding(
        "axes-mixed-in-data", "error",
        "the data's axes are mixed before the model: every sequence is scrambled",
        f"the input {tuple(x.shape)} that {type(root.recurrent).__name__} reads as "
        f"{layout} changes by {along_time:.3g} per step along its time axis and by "
        f"{along_batch:.3g} across the batch, but the same numbers read in the other "
        f"layout ({b}, {a}) change by only {other_time:.3g} per time step: the sequences "
        "were laid out one way and reinterpreted with view/reshape as the other",
        "Swap axes with x.transpose(0, 1) (or permute), not view/reshape, where the input "
        "is built; view and reshape keep the memory order and only re-cut it.",
        numbers, where))
    return True


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
                "(above)" + ("; an LSTM or GRU keeps information longer than an Elman RNN."
                             if _kinds(obs) <= {"srn"} else "."),
                numbers))
            return
    report.add(Finding(
        "uses-past", "ok", "the outputs depend on earlier inputs",
        f"the last output's gradient reaches inputs up to {horizon} steps back "
        f"(lag 1: {profile[1]:.3g} of lag 0)"
        + (f"; training {obs.metric_name} {numbers['model']:.3f} against memoryless "
           f"{numbers['memoryless']:.3f} and chance {numbers['chance']:.3f}"
           if "model" in numbers else ""), "", numbers))


def _kinds(obs: Observations) -> set[str]:
    return set(obs.kinds.values())


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
