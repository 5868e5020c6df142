"""Is a state carried across iterations a leak? The verdict, its evidence in words,
the lines to show and the fix in the script's own names (the evidence itself is
gathered by :mod:`rnnlab.doctor.carry`)."""

from __future__ import annotations

from typing import Any

from rnnlab.doctor import carry as carries
from rnnlab.doctor.findings import Finding, Location, Report
from rnnlab.doctor.records import Observations, StateCarry
from rnnlab.doctor.source import assignment_lines, callee_object, defines

# --- state carried across iterations ---------------------------------------------------
_UNRELATED = {
    "shuffled": "the batches come from a DataLoader with shuffle=True, so each batch is a "
                "random sample of sequences that cannot continue the previous batch",
    "per-sequence-target": "the loss has one target per sequence ({sequences} targets), so "
                           "the sequences are separate examples, not chunks of one stream",
}


def check_carries(obs: Observations, report: Report) -> None:
    if not obs.carries:
        return
    by_kind: dict[str, list[StateCarry]] = {}
    for c in obs.carries:
        c.kind, extra = carries.classify(c)
        c.numbers.update(extra)
        by_kind.setdefault(c.kind, []).append(c)
    first = obs.carries[0]
    iterations = len(obs.carried | {c.iteration for c in obs.carries})
    how = ("sharing its memory: a .data or .detach() of it" if first.how == "same storage"
           else "a copy of its values")
    head = (f"in {iterations} iteration(s) the initial state given to the recurrent layer "
            f"was the final state of a call in an earlier iteration, {how}")
    where, fix = _carry_lines(first)
    numbers: dict[str, Any] = {"iterations": iterations, "how": first.how,
                               "holder": first.numbers.get("holder")}
    if "repeated" in by_kind:
        c = by_kind["repeated"][0]
        report.add(Finding(
            "state-carried", "error",
            "hidden state carried across iterations into the same sequences",
            f"{head}; and the input was the very same sequences again (call {c.index} "
            f"repeats call {c.previous}): the state at the end of each sequence becomes the "
            "start of the next pass, so the network learns to ignore the start of a sequence",
            fix, {**numbers, "kind": "repeated"}, where))
    elif "unrelated" in by_kind:
        c = by_kind["unrelated"][0]
        n = c.numbers
        why = _UNRELATED.get(n.get("evidence", ""))
        if why is not None:
            why = why.format(**n)
        else:
            why = (f"the new batch does not continue the previous one: its first step is "
                   f"{n['constant_boundary_error']:.3g} away from the previous last step, "
                   f"while a step within a sequence moves {n['constant_typical_error']:.3g} "
                   f"and other rows are {n['constant_error_to_other']:.3g} away")
        report.add(Finding(
            "state-carried", "error",
            "hidden state carried across iterations into unrelated sequences",
            f"{head}; {why}", fix, {**numbers, "kind": "unrelated",
                                    **{k: v for k, v in n.items() if k != "holder"}}, where))
    elif "continuous" in by_kind:
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
    else:
        report.add(Finding(
            "state-carried", "warning",
            "hidden state carried across iterations; the doctor cannot tell if the batches "
            "continue each other",
            f"{head}; no shuffling DataLoader, per-sequence target, next-step target or "
            "smooth signal shows whether each batch continues the previous one",
            "If the batches are consecutive chunks of the same streams this is truncated BPTT "
            "and fine. Otherwise " + fix[0].lower() + fix[1:],
            {**numbers, "kind": "undecidable"}, where))


def _carry_lines(carry: StateCarry) -> tuple[list[Location], str]:
    """The lines to show (the innermost call that hands the state on, the line of the
    caller that holds it, the lines that detach it) and the fix in the script's names."""
    where = carry.where[:1]
    holder = carry.numbers.get("holder")
    frame = carry.numbers.get("holder_frame", 0)
    if holder and 0 < frame < len(carry.where):
        where.append(carry.where[frame])
    detach: list[Location] = []
    names = [n.strip() for n in holder.strip("()[] ").split(",")] if holder else []
    if names and where:
        files = dict.fromkeys(loc.file for loc in carry.where)
        for file in files:
            detach += assignment_lines(file, names[0], r"\.data\b|detach|repackage")
    where += [d for d in detach[:2] if all(d.line != w.line or d.file != w.file
                                           for w in where)]
    if not holder:
        return where, ("Start every batch of independent sequences from a fresh state: pass "
                       "None (or zeros) instead of the previous final state.")
    in_place = (f" in place of `{detach[0].code.strip().split('#')[0].strip()}`"
                if detach else "")
    if holder.startswith("self."):
        owner = callee_object(carry.numbers.get("outer_line", "")) or "model"
        attr = holder[len("self."):]
        files = list(dict.fromkeys(loc.file for loc in carry.where))
        reset = defines(files[0], ("init_hidden", "reset_hidden", "init_state", "begin_state",
                                   "reset_state", "zero_state")) if files else None
        how = (f"call `{owner}.{reset}(...)` before every batch" if reset
               else f"set `{owner}.{attr} = None` before every batch (and let forward start "
                    "from None)")
        return where, (f"The state lives in the module as `{holder}`, so it survives from one "
                       f"batch to the next: {how}{in_place}.")
    if len(names) > 1:
        return where, ("Start every batch of independent sequences from a fresh state: set "
                       + " and ".join(f"`{n}`" for n in names) + " to zeros (or pass None) "
                       f"at the start of each batch{in_place}.")
    return where, (f"Start every batch of independent sequences from a fresh state: "
                   f"`{holder} = None` (or zeros) at the start of each batch{in_place}.")


def _continuation(n: dict[str, Any]) -> str:
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
