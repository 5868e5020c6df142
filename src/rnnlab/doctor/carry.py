"""Is a state handed from one iteration to the next a leak or truncated BPTT?

A recurrent call whose initial state is the final state of a call in an *earlier*
iteration carries the state across batches. That is right only when the new batch
continues the same streams (truncated BPTT) and wrong otherwise. The evidence, in
the order it is trusted:

1. the very same sequences again (``repeated``): always a leak;
2. next-step prediction over one stream: the previous chunk's targets are its inputs
   one step ahead and its last target is this chunk's first input (token ids, one-hot
   rows or real values alike): ``continuous``;
3. the batch came from a ``DataLoader`` that shuffles: consecutive batches are random
   samples and cannot continue each other: ``unrelated``;
4. one target per sequence: the sequences are separate examples: ``unrelated``;
5. for real-valued inputs, the chunk-boundary test (:func:`continuity`): the first
   value of each row is predicted from the previous chunk's last values about as well
   as inside a chunk (``continuous``) or no better than from another row
   (``unrelated``);
6. otherwise ``undecidable``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnlab.doctor.records import RecurrentCall, StateCarry


def classify(carry: StateCarry) -> tuple[str, dict[str, Any]]:
    """The kind of a carry and the numbers behind it."""
    assert carry.calls is not None
    prev, call = carry.calls
    prev_x, cur_x = _inputs(prev, call)
    if prev_x is not None and cur_x is not None and prev_x.shape == cur_x.shape and \
            torch.equal(prev_x, cur_x):
        return "repeated", {"evidence": "repeated"}
    if next_step_continuity(prev.root_input, carry.prev_target, call.root_input,
                            _time_dim(call)):
        return "continuous", {"evidence": "next-step", "next_step_target": 1.0}
    if call.shuffled:
        return "unrelated", {"evidence": "shuffled"}
    n = _per_sequence(call, carry.target)
    if n:
        return "unrelated", {"evidence": "per-sequence-target", "sequences": n}
    if call.cell:
        return "undecidable", {}
    kind, numbers = continuity(prev.input, call.input, call.batch_first)
    return kind, ({"evidence": "boundary", **numbers} if numbers else {})


def _time_dim(call: RecurrentCall) -> int | None:
    """The time axis of the model's input, when it lines up with the layer's input."""
    x, shape = call.root_input, call.input_shape
    if call.cell:
        return 1 if x is not None and x.dim() >= 2 else None
    if x is None or shape is None or x.dim() < 2 or tuple(x.shape[:2]) != shape[:2]:
        return None
    return 1 if call.batch_first else 0


def _per_sequence(call: RecurrentCall, target: Tensor | None) -> int:
    """The number of sequences when the loss has exactly one target per sequence (the
    sequences are separate examples), else 0."""
    x = call.root_input if call.cell else call.input
    if target is None or x is None or x.dim() < 2:
        return 0
    batch_dim = 0 if (call.cell or call.batch_first) else 1
    n, length = int(x.shape[batch_dim]), int(x.shape[1 - batch_dim])
    if length < 2 or n == length:
        return 0
    shape = tuple(target.shape)
    return n if shape in ((n,), (n, 1)) else 0


def _inputs(prev: RecurrentCall, call: RecurrentCall) -> tuple[Tensor | None, Tensor | None]:
    if call.cell:  # one step of a cell: the whole sequences are the model's input
        return prev.root_input, call.root_input
    return prev.input, call.input


def as_tokens(x: Tensor) -> Tensor:
    """One-hot rows ``(..., V)`` as their indices ``(...)``; anything else unchanged."""
    if x.dtype.is_floating_point and x.dim() >= 2 and x.shape[-1] >= 2:
        binary = bool(((x == 0) | (x == 1)).all())
        if binary and bool((x.sum(-1) == 1).all()):
            return x.argmax(-1)
    return x


def next_step_continuity(prev: Tensor | None, prev_target: Tensor | None, cur: Tensor | None,
                         time_dim: int | None) -> bool:
    """True when the previous chunk's targets are its inputs shifted by one step and the
    current chunk starts with the previous chunk's last target: next-step prediction
    (a language model on token ids or one-hot rows, a next-value regressor) over one
    stream cut into chunks."""
    if prev is None or prev_target is None or cur is None or time_dim is None:
        return False
    prev, cur = as_tokens(prev), as_tokens(cur)
    if prev.dim() != cur.dim() or prev_target.numel() != prev.numel():
        return False
    if [n for d, n in enumerate(prev.shape) if d != time_dim] != [
            n for d, n in enumerate(cur.shape) if d != time_dim]:
        return False  # the last chunk of a stream may be shorter, nothing else may differ
    shape = prev.shape
    if shape[time_dim] < 2:
        return False
    target = prev_target.reshape(shape)
    last = target.select(time_dim, shape[time_dim] - 1)
    first = cur.select(time_dim, 0)
    inner = prev.narrow(time_dim, 1, shape[time_dim] - 1)
    ahead = target.narrow(time_dim, 0, shape[time_dim] - 1)
    if cur.dtype.is_floating_point:
        return bool(torch.allclose(last.to(cur.dtype), first)
                    and torch.allclose(inner.to(target.dtype), ahead))
    return bool(torch.equal(last.to(cur.dtype), first)
                and torch.equal(inner.to(target.dtype), ahead))


def continuity(prev: Tensor | None, cur: Tensor | None,
               batch_first: bool) -> tuple[str, dict[str, float]]:
    """Classify a real-valued input that received an earlier call's final state.

    ``"repeated"``: the same sequences again. ``"continuous"``: each row starts where
    the previous chunk of the same row ended, clearly closer than to other rows:
    truncated BPTT over a stream. ``"unrelated"``: the start is no closer to the
    previous end than any other value is. ``"undecidable"``: the values cannot tell
    (random bits, flat signals, token ids).
    """
    if prev is None or cur is None:
        return "undecidable", {}
    if prev.shape == cur.shape and torch.equal(prev, cur):
        return "repeated", {"max_abs_difference": 0.0}
    if not cur.dtype.is_floating_point or cur.dim() != 3 or prev.dim() != 3:
        return "undecidable", {}
    if not batch_first:
        prev, cur = prev.transpose(0, 1), cur.transpose(0, 1)
    if prev.shape[0] != cur.shape[0] or prev.shape[1] < 2 or cur.shape[1] < 2:
        return "undecidable", {}
    prev, cur = prev.double(), cur.double()
    verdicts, numbers = [], {}
    for name, order in (("constant", 1), ("linear", 2)):
        if prev.shape[1] <= order or cur.shape[1] <= order:
            continue
        kind, nums = _boundary_test(prev, cur, order)
        verdicts.append(kind)
        numbers.update({f"{name}_{k}": v for k, v in nums.items()})
    if "continuous" in verdicts:
        return "continuous", numbers
    if verdicts and all(v == "unrelated" for v in verdicts):
        return "unrelated", numbers
    return "undecidable", numbers


def _boundary_test(prev: Tensor, cur: Tensor, order: int) -> tuple[str, dict[str, float]]:
    """Predict each row's next value from its last ``order`` values (hold the last value,
    or extend the last step) and compare the error at the chunk boundary with the error
    inside the chunks and with the error against other rows."""
    def predict(x: Tensor) -> Tensor:  # the prediction of x[:, t] from x[:, t-order: t]
        return x[:, :-1] if order == 1 else 2 * x[:, 1:-1] - x[:, :-2]

    guess = prev[:, -1] if order == 1 else 2 * prev[:, -1] - prev[:, -2]
    boundary = float((cur[:, 0] - guess).abs().mean())
    inside = torch.cat([(prev[:, order:] - predict(prev)).reshape(-1),
                        (cur[:, order:] - predict(cur)).reshape(-1)])
    step = float(inside.abs().mean())
    if cur.shape[0] >= 2:
        other = float(torch.stack([(cur[:, 0].roll(s, 0) - guess).abs().mean()
                                   for s in range(1, min(cur.shape[0], 4))]).mean())
    else:
        other = float((cur[:, 1:] - guess.unsqueeze(1)).abs().mean())
    numbers = {"boundary_error": boundary, "typical_error": step, "error_to_other": other}
    if boundary < 0.25 * other and boundary <= 3 * step + 1e-12:
        return "continuous", numbers
    if boundary > 0.5 * other and other > 3 * step:
        return "unrelated", numbers
    return "undecidable", numbers
