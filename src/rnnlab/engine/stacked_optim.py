"""Adam and SGD over stacked parameters ``(M, ...)`` with a learning rate and weight
decay per copy, so one lock-step group can hold a hyper-parameter grid.

When every copy has the same learning rate and weight decay, ``torch.optim`` over
the stacked tensors is already one optimiser per copy (both are elementwise), and
:func:`make_stacked_optimizer` returns it. Otherwise these classes apply torch's own
update rules (``torch.optim.Adam`` / ``SGD`` without amsgrad, nesterov or dampening)
with each copy's ``lr`` and ``weight_decay`` broadcast along the leading dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _per_copy(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


class StackedAdam:
    """``torch.optim.Adam`` (betas 0.9/0.999, eps 1e-8) with ``lr``/``weight_decay`` ``(M,)``."""

    def __init__(self, params: list[Tensor], lr: Tensor, weight_decay: Tensor,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.weight_decay = params, lr, weight_decay
        self.betas, self.eps, self.steps = betas, eps, 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        correction1 = 1 - beta1 ** self.steps
        correction2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            grad = p.grad + _per_copy(self.weight_decay, p) * p
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (v.sqrt() / correction2_sqrt).add_(self.eps)
            p.sub_(_per_copy(self.lr / correction1, p) * (m / denom))


class StackedSGD:
    """``torch.optim.SGD`` (momentum, no dampening, no nesterov) with ``lr``/``weight_decay``
    ``(M,)``."""

    def __init__(self, params: list[Tensor], lr: Tensor, weight_decay: Tensor,
                 momentum: float = 0.0) -> None:
        self.params, self.lr, self.weight_decay, self.momentum = params, lr, weight_decay, momentum
        self.buffers: list[Tensor | None] = [None] * len(params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad + _per_copy(self.weight_decay, p) * p
            if self.momentum:
                buf = self.buffers[i]
                buf = grad.clone() if buf is None else buf.mul_(self.momentum).add_(grad)
                self.buffers[i] = grad = buf
            p.sub_(_per_copy(self.lr, p) * grad)


def make_stacked_optimizer(params: list[Tensor], optimizer: str, lr: list[float],
                           weight_decay: list[float], momentum: float):
    """One optimiser state per copy over stacked ``params``, as the trainer steps them."""
    if len(set(lr)) == 1 and len(set(weight_decay)) == 1:
        if optimizer == "adam":
            return torch.optim.Adam(params, lr=lr[0], weight_decay=weight_decay[0])
        return torch.optim.SGD(params, lr=lr[0], momentum=momentum,
                               weight_decay=weight_decay[0])
    rates = torch.tensor(lr, dtype=torch.float64)
    decays = torch.tensor(weight_decay, dtype=torch.float64)
    if optimizer == "adam":
        return StackedAdam(params, rates, decays)
    return StackedSGD(params, rates, decays, momentum)
