"""``|dL/dh_t|`` at every time step, read during the user's own ``backward()``.

Fused ``torch.nn.RNN/LSTM/GRU`` kernels keep their per-step states hidden, so on a few
iterations the layer's output is recomputed one step at a time (:func:`replay_steps`)
and returned in place of the fused output; tensor hooks on every step's output and
state then read the gradient of the user's real loss. A cell driven by the user's
own loop exposes its steps already (:func:`watch_cell_step`).

:func:`reference_norms` answers "is this normal?": the same measurement on a freshly
initialised copy of the layer, on the same input, with the same gradient arriving at
each step's output. Gated cells lose their gradient at initialisation almost as fast
as an Elman RNN (docs/doctor.md), so only a profile far outside that is a finding.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.doctor.records import cell_kind, flat_state


def replay_steps(module: nn.Module, x: Tensor, state: Any, batch_first: bool,
                 result: Any) -> tuple[Any, list[tuple[Tensor, list[Tensor]]]] | None:
    """The module's output recomputed one step at a time, with every step's state.

    Kept only when it reproduces the original output (``None`` otherwise).
    """
    time_dim = 1 if batch_first else 0
    if x.dim() != 3 or not isinstance(result, tuple) or not isinstance(result[0], Tensor):
        return None
    stepped = _steps(module, x, state, time_dim)
    output, state, steps = stepped
    if output.shape != result[0].shape:
        return None
    if getattr(module, "dropout", 0) == 0 and not torch.allclose(
            output, result[0], atol=1e-4, rtol=1e-3):
        return None
    return (output, state, *result[2:]), steps


def _steps(module: nn.Module, x: Tensor, state: Any,
           time_dim: int) -> tuple[Tensor, Any, list[tuple[Tensor, list[Tensor]]]]:
    outputs, steps = [], []
    for t in range(x.shape[time_dim]):
        out, state = module.forward(x.narrow(time_dim, t, 1), state)
        outputs.append(out)
        steps.append((out, flat_state(state)))
    return torch.cat(outputs, dim=time_dim), state, steps


def new_record(iteration: int, time_dim: int, module: nn.Module, length: int,
               layers: int, x: Tensor | None = None, state: Any = None) -> dict[str, Any]:
    """An empty record of per-step gradients, filled by the hooks of one backward."""
    return {"iteration": iteration, "time_dim": time_dim, "kind": cell_kind(module),
            "module": module, "x": x, "state0": state,
            "out": [None] * length, "state": [[None] * layers for _ in range(length)]}


def _keep(slot: list, k: int):
    def hook(grad: Tensor) -> None:
        grad = grad.detach()
        slot[k] = grad if slot[k] is None else slot[k] + grad
    return hook


def watch_steps(record: dict[str, Any], steps: list[tuple[Tensor, list[Tensor]]]) -> None:
    """Hooks on every replayed step's output and state."""
    for t, (out, state) in enumerate(steps):
        if out.requires_grad:
            out.register_hook(_keep(record["out"], t))
        for k, tensor in enumerate(state):
            if tensor.requires_grad:
                tensor.register_hook(_keep(record["state"][t], k))


def watch_cell_step(record: dict[str, Any], state: list[Tensor]) -> None:
    """Hooks on the new state of one step of a cell in the user's own loop."""
    slots = [None] * len(state)
    record["state"].append(slots)
    record["out"].append(None)
    for k, tensor in enumerate(state):
        if tensor.requires_grad:
            tensor.register_hook(_keep(slots, k))


def state_grad_norms(record: dict[str, Any]) -> list[float]:
    """``|dL/dh_t|`` for every step: the gradient reaching the state at ``t`` through
    the output at ``t`` and through all later steps, over all layers (and the LSTM
    cell state)."""
    norms = []
    time_dim = record["time_dim"]
    for out, state in zip(record["out"], record["state"], strict=True):
        total = 0.0
        top = out.squeeze(time_dim) if out is not None else None
        for k, grad in enumerate(state):
            if grad is None:
                continue
            if k == 0 and top is not None and grad.dim() == 3 and grad[-1].shape == top.shape:
                # the layer's output at t *is* the top layer's h_t: one gradient, two paths
                grad = grad.clone()
                grad[-1] += top
                top = None
            total += float(grad.double().pow(2).sum())
        if top is not None:
            total += float(top.double().pow(2).sum())
        norms.append(math.sqrt(total))
    return norms


def reference_norms(record: dict[str, Any], seed: int = 0) -> list[float] | None:
    """``|dL/dh_t|`` of a freshly initialised copy of the recorded layer, on the same
    input and initial state, with the same gradients arriving from outside (at every
    step's output and at the final state). ``None`` when it cannot be measured."""
    module, x = record.get("module"), record.get("x")
    if module is None or x is None or not hasattr(module, "reset_parameters"):
        return None
    fresh = copy.deepcopy(module)
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(seed)
        for m in fresh.modules():
            if m is not fresh and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        fresh.reset_parameters()
        fresh.eval()
        _, final, steps = _steps(fresh, x, record.get("state0"), record["time_dim"])
    ref = new_record(record["iteration"], record["time_dim"], module, len(steps),
                     len(steps[0][1]) if steps else 0)
    watch_steps(ref, steps)
    tensors, grads = [], []
    for (out, _), g in zip(steps, record["out"], strict=True):
        if g is not None and out.requires_grad:
            tensors.append(out)
            grads.append(g)
    last = record["state"][-1] if record["state"] else []
    for tensor, g in zip(flat_state(final), last, strict=False):
        if g is not None and tensor.requires_grad and g.shape == tensor.shape:
            tensors.append(tensor)
            grads.append(g)
    if not tensors:
        return None
    torch.autograd.backward(tensors, grads)
    return state_grad_norms(ref)
