"""Small readers of what a call or a batch holds: the input and initial state of a
recurrent call, the first tensor of a batch, whether a state is an earlier final
state, the metric of a loss call. Used by the watcher's hooks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def split_call(args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """(input, initial state) of a recurrent call, for torch and rnnlab layers and cells."""
    x = args[0] if args else kwargs.get("input", kwargs.get("x"))
    if len(args) > 1:
        state = args[1]
    else:
        state = kwargs.get("hx", kwargs.get("state", kwargs.get("h0")))
    return x, state


def has_lengths(args: tuple, kwargs: dict) -> bool:
    return (len(args) > 2 and args[2] is not None) or kwargs.get("lengths") is not None


def detached(state: Any) -> Any:
    if isinstance(state, Tensor):
        return state.detach().clone()
    if isinstance(state, (tuple, list)):
        return type(state)(detached(s) for s in state)
    return state


def clone(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(clone(v) for v in value)
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def sequence_tensor(args: Any) -> Tensor | None:
    for a in args:
        if isinstance(a, Tensor) and a.dim() >= 2:
            return a
    return None


def first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            found = first_tensor(v)
            if found is not None:
                return found
    if isinstance(value, dict):
        for v in value.values():
            found = first_tensor(v)
            if found is not None:
                return found
    return None


def same_state(init: list[Tensor], final: list[Tensor]) -> str | None:
    """How an initial state is an earlier final state: same memory, or equal values."""
    for a in init:
        for b in final:
            if a.shape != b.shape:
                continue
            same = a.data_ptr() == b.data_ptr()
            if not same and not torch.equal(a.detach(), b):
                continue
            if not bool(a.detach().ne(0).any()):
                continue  # zeros are a fresh state, whatever made them
            return "same storage" if same else "equal values"
    return None


def metric(pred: Tensor, target: Tensor) -> tuple[str, float]:
    """Accuracy for class targets, mean squared error for real targets."""
    if not target.dtype.is_floating_point and pred.dim() == target.dim() + 1:
        if pred.shape[:-1] == target.shape:
            return "accuracy", float((pred.argmax(-1) == target).float().mean())
        if pred.dim() >= 2 and pred.shape[:1] + pred.shape[2:] == target.shape:
            return "accuracy", float((pred.argmax(1) == target).float().mean())
        return "", 0.0
    if target.dtype.is_floating_point and pred.shape == target.shape:
        return "mse", float((pred.float() - target.float()).pow(2).mean())
    return "", 0.0
