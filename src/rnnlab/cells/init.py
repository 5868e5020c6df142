"""Initialisers by name, applied to a cell's ``weight_ih``, ``weight_hh``, ``bias_*``.

Every initialiser draws from torch's global generator, so the caller seeds
(``rnnlab.seed_everything``) and the same seed gives the same weights. The gated
cells stack their gates as row blocks of ``H`` rows (LSTM i, f, g, o; GRU r, z, n);
``orthogonal`` and ``xavier`` treat each block as its own ``H x H_in`` / ``H x H``
matrix, so every gate gets a well-scaled matrix rather than a slice of one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from rnnlab.errors import RnnlabError

if TYPE_CHECKING:
    from rnnlab.cells.base import RecurrentCell


def _biases(cell: RecurrentCell) -> list[torch.Tensor]:
    return [b for b in (cell.bias_ih, cell.bias_hh) if b is not None]


def init_zeros(cell: RecurrentCell, std: float) -> None:
    """Every parameter zero: the seed 004 SRN (its ``W``, ``U`` and ``b`` start at 0)."""
    for p in cell.parameters():
        nn.init.zeros_(p)


def init_torch(cell: RecurrentCell, std: float) -> None:
    """PyTorch's default: every parameter uniform in ``(-1/sqrt(H), 1/sqrt(H))``.

    Drawn parameter by parameter in torch's order, so a seeded cell equals a seeded
    ``torch.nn.RNNCell/LSTMCell/GRUCell`` of the same sizes.
    """
    bound = 1.0 / math.sqrt(cell.hidden_size)
    for p in cell.parameters():
        nn.init.uniform_(p, -bound, bound)


def init_normal(cell: RecurrentCell, std: float) -> None:
    """Every parameter (biases too) from ``N(0, std^2)``; seed 001 uses ``std=0.001``."""
    for p in cell.parameters():
        nn.init.normal_(p, mean=0.0, std=std)


def init_orthogonal(cell: RecurrentCell, std: float) -> None:
    """Orthogonal recurrent weights, Xavier-uniform input weights, zero biases.

    Each gate's ``H x H`` block of ``weight_hh`` is orthogonal, so the linear part of
    the recurrence neither shrinks nor grows the state (the Keras default for
    recurrent kernels, and Saxe et al.'s remedy for vanishing gradients).
    """
    with torch.no_grad():
        for block in cell.weight_ih.chunk(cell.gates, dim=0):
            nn.init.xavier_uniform_(block)
        for block in cell.weight_hh.chunk(cell.gates, dim=0):
            nn.init.orthogonal_(block)
    for b in _biases(cell):
        nn.init.zeros_(b)


def init_keras(cell: RecurrentCell, std: float) -> None:
    """Keras' recurrent defaults: :func:`init_orthogonal`, plus an LSTM forget-gate bias of 1.

    A forget bias of 1 (Gers et al. 2000; Jozefowicz et al. 2015) starts the LSTM
    remembering rather than forgetting, which is what lets it learn long lags at all in
    a short training budget. Only ``bias_ih``'s forget block is set, so the effective
    bias ``b_ih + b_hh`` is exactly 1. Other cells get plain :func:`init_orthogonal`.
    """
    init_orthogonal(cell, std)
    if cell.name == "lstm" and cell.bias_ih is not None:
        h = cell.hidden_size
        with torch.no_grad():
            cell.bias_ih[h:2 * h].fill_(1.0)


def init_xavier(cell: RecurrentCell, std: float) -> None:
    """Xavier-uniform input and recurrent weights (per gate block), zero biases."""
    with torch.no_grad():
        for weight in (cell.weight_ih, cell.weight_hh):
            for block in weight.chunk(cell.gates, dim=0):
                nn.init.xavier_uniform_(block)
    for b in _biases(cell):
        nn.init.zeros_(b)


INITS: dict[str, Callable[[RecurrentCell, float], None]] = {
    "zeros": init_zeros,
    "torch": init_torch,
    "orthogonal": init_orthogonal,
    "keras": init_keras,
    "normal": init_normal,
    "xavier": init_xavier,
}


def init_names() -> list[str]:
    """The initialiser names, sorted."""
    return sorted(INITS)


def initialise(cell: RecurrentCell, name: str, std: float = 0.001) -> None:
    """Initialise ``cell`` in place with the initialiser called ``name``."""
    if name not in INITS:
        raise RnnlabError(f"unknown initialiser {name!r}; known initialisers: "
                          + ", ".join(init_names()))
    if name == "normal" and not std > 0:
        raise RnnlabError(f"init_std must be positive for the normal initialiser, got {std}")
    INITS[name](cell, std)
