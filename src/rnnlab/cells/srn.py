"""The simple recurrent network (Elman network), as ``torch.nn.RNNCell``.

``srn_update`` / ``srn_step`` are the recurrence as pure functions of the weights;
:class:`SRN` calls them with its own parameters and the lock-step engine calls them
with a stack of weights (see :func:`rnnlab.cells.base.linear`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rnnlab.cells.base import RecurrentCell, linear
from rnnlab.errors import ensure

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def srn_update(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None,
               nonlinearity: str = "tanh", trace: dict[str, Tensor] | None = None) -> Tensor:
    """``act(gi + W_hh h + b_hh)`` where ``gi = W_ih x + b_ih`` is already computed.

    ``trace``, when given, receives ``act`` (what a hand-written backward pass needs).
    """
    a = NONLINEARITIES[nonlinearity](gi + linear(h, weight_hh, bias_hh))
    if trace is not None:
        trace["act"] = a
    return a


def srn_step(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
             nonlinearity: str = "tanh") -> Tensor:
    """One SRN step from the raw input ``x``."""
    return srn_update(linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh, nonlinearity)


class SRN(RecurrentCell):
    r"""The simple recurrent network (Elman) cell, tanh or ReLU.

    .. math::
        h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    With ``nonlinearity="relu"``, ReLU replaces tanh. The seed 004 SRN writes the same
    recurrence as ``tanh(x W + h U + b)``: its ``W`` is ``weight_ih^T``, its ``U`` is
    ``weight_hh^T`` and its ``b`` is ``bias_ih + bias_hh``; with ``bias="single"`` the
    cell has that one vector ``b`` (as ``bias_ih``, no ``bias_hh``), exactly the seed's
    parameters (the python backend only: ``torch.nn.RNN`` always has two).

    Args:
        input_size: features of ``x`` (``H_in``).
        hidden_size: features of ``h`` (``H_out``).
        bias: if ``False``, no ``b_ih`` and ``b_hh``; ``"single"``: only ``b_ih``.
        init: initialiser name (see :mod:`rnnlab.cells.init`).
        init_std: standard deviation for ``init="normal"``.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Shapes:
        - x: ``(N, H_in)``; h and h': ``(N, H_out)``.
        - weight_ih ``(H_out, H_in)``, weight_hh ``(H_out, H_out)``, biases ``(H_out)``.
    """

    name: ClassVar[str] = "srn"
    recurrence = staticmethod(srn_update)
    gates: ClassVar[int] = 1
    native: ClassVar[str | None] = "RNN"

    def __init__(self, input_size: int, hidden_size: int, bias: bool | str = True,
                 init: str = "torch", init_std: float = 0.001,
                 nonlinearity: str = "tanh") -> None:
        ensure(nonlinearity in NONLINEARITIES,
              f"unknown nonlinearity {nonlinearity!r}; known: relu, tanh")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias=bias, init=init, init_std=init_std)

    def update(self, gi: Tensor, state: Tensor) -> Tensor:
        return srn_update(gi, state, self.weight_hh, self.bias_hh, self.nonlinearity)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else text + ", nonlinearity='relu'"
