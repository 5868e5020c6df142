"""Probes: small experiments on a model and one real batch that answer one question each.

- :func:`batch_dim_evidence`: which axis of the batch does the *user* mean as the
  sequences? The model cannot say: a time-major model fed batch-first data computes
  exactly what a correct time-major script computes; only the data can tell.
- :func:`cross_sequence_probe`: does the output for one sequence depend on the inputs
  of other sequences? (gradient of one sequence's output with respect to the batch)
- :func:`lag_profile`: how strongly does the last output depend on the input ``k``
  steps earlier, for every ``k``?
- :func:`memoryless_baseline`: the best score a model that sees only the current input
  could get on this batch, and chance.

Every probe runs the model in eval mode (batch norm and dropout would blur the
answers) and puts the mode back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

# A dependency weaker than this share of the gradient is float noise, not a connection.
DEPENDENCE = 1e-6


def batch_dim_evidence(x: Tensor, loader_sizes: list[int] | None = None,
                       target: Tensor | None = None) -> tuple[int | None, list[str]]:
    """Which of the first two axes of ``x`` holds the user's sequences, and why.

    Votes: the ``DataLoader`` batch size (collate stacks samples along dim 0 of what
    it yields), a per-sequence target's length, and smoothness (real signals change
    little from one time step to the next, much more from one sequence to another).
    Conflicting or no votes give ``None``: then the doctor does not judge the axes.
    """
    if x.dim() < 2:
        return None, []
    a, b = int(x.shape[0]), int(x.shape[1])
    votes: list[tuple[int, str]] = []
    if loader_sizes and a != b:
        size = loader_sizes[-1]
        if size in (a, b):
            dim = 0 if size == a else 1
            votes.append((dim, f"the DataLoader yields batches of {size} sequences, "
                               f"which is axis {dim} of the input {tuple(x.shape)}"))
    if target is not None and target.dim() == 1 and a != b and target.numel() in (a, b):
        dim = 0 if target.numel() == a else 1
        votes.append((dim, f"the loss has one target per sequence ({target.numel()}), "
                           f"the size of axis {dim}"))
    onehot = x.dim() >= 3 and x.shape[-1] >= 2 and bool(((x == 0) | (x == 1)).all()) and \
        bool((x.sum(-1) == 1).all())
    if x.dtype.is_floating_point and min(a, b) >= 3 and not onehot:  # smoothness of a signal
        xf = x.double()
        along0 = float(xf.diff(dim=0).abs().mean())
        along1 = float(xf.diff(dim=1).abs().mean())
        if along1 < 0.5 * along0:
            votes.append((0, f"the input changes smoothly along axis 1 (mean step "
                             f"{along1:.3g}) and not along axis 0 ({along0:.3g}): "
                             "axis 1 is time"))
        elif along0 < 0.5 * along1:
            votes.append((1, f"the input changes smoothly along axis 0 (mean step "
                             f"{along0:.3g}) and not along axis 1 ({along1:.3g}): "
                             "axis 0 is time"))
    dims = {d for d, _ in votes}
    if len(dims) != 1:
        return None, [r for _, r in votes]
    return dims.pop(), [r for _, r in votes]


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode with gradients on, restored afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, mode in modes:
            m.train(mode)


def sequence_arg(args: tuple) -> int | None:
    """Index of the argument that carries the sequences: the first tensor of rank >= 2."""
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and a.dim() >= 2:
            return i
    return None


def primary(output: Any) -> Tensor | None:
    """The main output of a model: itself, or the first tensor of a tuple or dict."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for o in output:
            found = primary(o)
            if found is not None:
                return found
    if isinstance(output, dict):
        return primary(list(output.values()))
    return None


def _differentiable_input(module: nn.Module, args: tuple, kwargs: dict, index: int):
    """Run ``module`` with gradients reaching the sequence input.

    Real-valued inputs are made leaves; token inputs are followed to the output of the
    embedding that reads them, which becomes the leaf instead (same leading shape).
    Returns ``(leaf, output)`` or ``None``.
    """
    x = args[index]
    if x.dtype.is_floating_point:
        leaf = x.detach().clone().requires_grad_(True)
        new_args = args[:index] + (leaf,) + args[index + 1:]
        return leaf, module(*new_args, **kwargs)
    holder: list[Tensor] = []

    def hook(emb: nn.Module, inputs: tuple, out: Tensor) -> Tensor | None:
        if not holder and inputs and inputs[0].shape == x.shape:
            holder.append(out.detach().requires_grad_(True))
            return holder[0]
        return None

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, nn.Embedding)]
    try:
        output = module(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    if not holder:
        return None
    return holder[0], output


def align(out: Tensor, n: int, t: int, batch_dim: int) -> tuple[Tensor, bool] | None:
    """``out`` with the sequences on axis 0 and, when it has one, time on axis 1."""
    if batch_dim == 0:
        if out.dim() >= 2 and out.shape[0] == n and out.shape[1] == t:
            return out, True
        if out.shape[0] == n:
            return out, False
        if out.shape[0] == n * t:
            return out.reshape(n, t, -1), True
    else:
        if out.dim() >= 2 and out.shape[0] == t and out.shape[1] == n:
            return out.transpose(0, 1), True
        if out.shape[0] == n:
            return out, False
        if out.dim() >= 2 and out.shape[1] == n:
            return out.transpose(0, 1), False
        if out.shape[0] == n * t:
            return out.reshape(t, n, -1).transpose(0, 1), True
    return None


def _projection(shape: torch.Size, seed: int) -> Tensor:
    # A random direction, not a sum: the outputs of a softmax sum to one, and their
    # plain sum would have no gradient at all.
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def cross_sequence_probe(module: nn.Module, args: tuple, kwargs: dict, batch_dim: int,
                         probes: int = 3) -> dict[str, Any] | None:
    """How much of the gradient of sequence ``i``'s output comes from other sequences.

    Exactly zero for a correct model: nothing connects two sequences of a batch. The
    last sequence is always probed, because a model that runs along the batch axis
    makes the *last* sequence depend on all the others.
    """
    index = sequence_arg(args)
    if index is None:
        return None
    x = args[index]
    n, t = int(x.shape[batch_dim]), int(x.shape[1 - batch_dim])
    if n < 2:
        return None
    with evaluating(module):
        run = _differentiable_input(module, args, kwargs, index)
        if run is None:
            return None
        leaf, output = run
        out = primary(output)
        if out is None or not out.requires_grad:
            return None
        located = align(out, n, t, batch_dim)
        if located is None:
            return None
        out, _ = located
        worst: dict[str, Any] = {"share": 0.0}
        for k, i in enumerate(sorted({n - 1, 0, n // 2}, reverse=True)[:probes]):
            target = out[i]
            w = _projection(target.shape, k).to(device=target.device, dtype=target.dtype)
            (grad,) = torch.autograd.grad((target * w).sum(), leaf, retain_graph=True,
                                          allow_unused=True)
            if grad is None:
                continue
            dims = [d for d in range(grad.dim()) if d != batch_dim]
            per = grad.detach().double().abs().sum(dim=dims)
            total = float(per.sum())
            if total == 0:
                continue
            share = (total - float(per[i])) / total
            others = int((per > DEPENDENCE * per.max()).sum()) - int(per[i] > 0)
            if share > worst["share"]:
                worst = {"share": share, "sequence": i, "other_sequences": others,
                         "batch": n}
        return worst


def lag_profile(module: nn.Module, args: tuple, kwargs: dict, batch_dim: int) -> list[float]:
    """Gradient of the last output with respect to the input ``k`` steps earlier,
    relative to ``k = 0``, for ``k = 0 .. L-1``. Empty when it cannot be measured."""
    index = sequence_arg(args)
    if index is None:
        return []
    x = args[index]
    n, t = int(x.shape[batch_dim]), int(x.shape[1 - batch_dim])
    if t < 2:
        return []
    time_dim = 1 - batch_dim
    with evaluating(module):
        run = _differentiable_input(module, args, kwargs, index)
        if run is None:
            return []
        leaf, output = run
        out = primary(output)
        if out is None or not out.requires_grad:
            return []
        located = align(out, n, t, batch_dim)
        if located is None:
            return []
        out, has_time = located
        last = out[:, -1] if has_time else out
        w = _projection(last.shape, 7).to(device=last.device, dtype=last.dtype)
        (grad,) = torch.autograd.grad((last * w).sum(), leaf, allow_unused=True)
    if grad is None:
        return []
    dims = [d for d in range(grad.dim()) if d != time_dim]
    per = grad.detach().double().abs().sum(dim=dims)
    ref = float(per[-1]) if float(per[-1]) > 0 else float(per.max())
    if ref == 0:
        return []
    return [float(v) / ref for v in per.flip(0)]


def memoryless_baseline(x: Tensor, target: Tensor, batch_dim: int = 0,
                        bins: int = 16) -> dict[str, Any] | None:
    """The best metric on this batch from the current input alone, and chance.

    The current input is reduced to a key (the token, the one-hot index, or the
    quantile bin of a scalar feature); a memoryless model can do no better than the
    majority target per key (classification) or the mean target per key (regression).
    ``None`` when the batch is too small for the estimate to mean anything or the
    input has no simple key.
    """
    x, target = x.detach().cpu(), target.detach().cpu()
    if batch_dim == 1:
        x = x.transpose(0, 1)
    n, t = int(x.shape[0]), int(x.shape[1]) if x.dim() >= 2 else 1
    key = _input_key(x, bins)
    if key is None:
        return None
    if target.numel() == n * t and target.dim() >= 1:
        tgt = (target.reshape(n, t) if batch_dim == 0 or target.shape[:2] == (n, t)
               else target.reshape(t, n).transpose(0, 1))
    elif target.numel() == n:
        tgt, key = target.reshape(n), key[:, -1]
    else:
        return None
    key, tgt = key.reshape(-1), tgt.reshape(-1)
    groups = torch.unique(key)
    if key.numel() < 20 * len(groups):
        return None
    if tgt.dtype.is_floating_point:
        tgt = tgt.double()
        within = sum(float(((tgt[key == g] - tgt[key == g].mean()) ** 2).sum())
                     for g in groups) / tgt.numel()
        return {"metric": "mse", "memoryless": within, "chance": float(tgt.var(unbiased=False)),
                "positions": int(tgt.numel())}
    tgt = tgt.long()
    hits = sum(int(torch.bincount(tgt[key == g] - tgt.min()).max()) for g in groups)
    chance = float(torch.bincount(tgt - tgt.min()).max()) / tgt.numel()
    return {"metric": "accuracy", "memoryless": hits / tgt.numel(), "chance": chance,
            "positions": int(tgt.numel())}


def _input_key(x: Tensor, bins: int) -> Tensor | None:
    if not x.dtype.is_floating_point:
        return x if x.dim() == 2 else None
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    if x.dim() != 3:
        return None
    if x.shape[-1] == 1:
        values = x[..., 0].double()
        edges = torch.quantile(values.reshape(-1)[:100_000],
                               torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1])
        return torch.bucketize(values, torch.unique(edges))
    onehot = ((x == 0) | (x == 1)).all() and bool((x.sum(-1) == 1).all())
    return x.argmax(-1) if onehot else None
