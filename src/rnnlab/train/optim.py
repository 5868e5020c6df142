"""The optimiser and gradient clipping of contract point 3."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from rnnlab.errors import ensure
from rnnlab.train.config import TrainConfig


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD over ``model.parameters()``, as the contract states."""
    params = list(model.parameters())
    ensure(len(params) > 0, "the model has no parameters to train")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def clip_gradients(parameters: Iterable[nn.Parameter], config: TrainConfig) -> None:
    """Clip in place: element clamp, then per-parameter norm, then global norm (each
    only when set), with ``torch.nn.utils``'s functions."""
    params = [p for p in parameters if p.grad is not None]
    if config.clip_value is not None:
        nn.utils.clip_grad_value_(params, config.clip_value)
    if config.clip_per_param is not None:
        for p in params:
            nn.utils.clip_grad_norm_([p], config.clip_per_param)
    if config.clip_norm is not None:
        nn.utils.clip_grad_norm_(params, config.clip_norm)
