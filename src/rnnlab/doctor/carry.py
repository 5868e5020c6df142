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
    """True when the previous chunk's targets are its next inputs and the current chunk
    starts with the previous chunk's last target: next-step prediction (a language
    model, a next-value regressor) over one stream cut into chunks.

    The inputs may code the targets in any fixed way: token ids equal to the targets,
    one-hot rows, embeddings computed before the model, or the real values themselves.
    The code is learnt from the previous chunk (target at ``t`` -> input at ``t + 1``):
    it must be consistent there, and must give the current chunk's first input from
    the previous chunk's last target.
    """
    if prev is None or prev_target is None or cur is None or time_dim not in (0, 1):
        return False
    if prev.dim() < 2 or cur.dim() != prev.dim() or prev.shape[2:] != cur.shape[2:]:
        return False
    batch_dim = 1 - time_dim
    n, length = int(prev.shape[batch_dim]), int(prev.shape[time_dim])
    if int(cur.shape[batch_dim]) != n or length < 2 or prev_target.numel() % (n * length):
        return False  # the last chunk of a stream may be shorter, nothing else may differ
    width = prev_target.numel() // (n * length)
    target = prev_target.reshape(*prev.shape[:2], width)
    if time_dim == 0:
        prev, cur, target = prev.transpose(0, 1), cur.transpose(0, 1), target.transpose(0, 1)
    x = prev.reshape(n, length, -1)
    first = cur.reshape(n, cur.shape[1], -1)[:, 0]
    if x.shape[-1] == width:  # the inputs are the targets themselves (ids, real values)
        t = target.to(torch.float64)
        return bool(torch.allclose(x[:, 1:].double(), t[:, :-1], atol=1e-6, rtol=1e-5)
                    and torch.allclose(first.double(), t[:, -1], atol=1e-6, rtol=1e-5))
    keys = target[:, :-1].reshape(-1, width)
    values = x[:, 1:].reshape(-1, x.shape[-1]).double()
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    if len(unique) > 0.9 * len(keys) and len(keys) > 8:
        return False  # every target different: nothing to learn a code from
    owner = torch.full((len(unique),), len(keys), dtype=torch.long)
    owner.scatter_reduce_(0, inverse, torch.arange(len(keys)), reduce="amin")
    code = values[owner]
    if not torch.allclose(values, code[inverse], atol=1e-5, rtol=1e-4):
        return False  # the same target is followed by different inputs: not the next input
    last = target[:, -1].reshape(-1, width)
    match = (last.unsqueeze(1) == unique.unsqueeze(0)).all(-1)
    known = match.any(1)
    if int(known.sum()) < max(1, n // 2):
        return False
    expected = code[match[known].float().argmax(1)]
    return bool(torch.allclose(first[known].double(), expected, atol=1e-5, rtol=1e-4))


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
    if "unrelated" in verdicts:  # the better predictor decides; neither saw continuity
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
