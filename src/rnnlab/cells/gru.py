"""The gated recurrent unit, as ``torch.nn.GRUCell`` (gates r, z, n).

``gru_update`` / ``gru_step`` are the recurrence as pure functions of the weights,
reused by the lock-step engine with stacked weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rnnlab.cells.base import RecurrentCell, linear


def gru_update(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None,
               trace: dict[str, Tensor] | None = None) -> Tensor:
    """The new ``h`` from ``gi = W_ih x + b_ih`` and ``h``.

    The reset gate multiplies ``W_hn h + b_hn`` (not ``h``), as torch and cuDNN do, so
    the input and hidden projections stay separate. ``trace``, when given, receives
    the gates ``r, z, n`` and ``h_n = W_hn h + b_hn`` (for a hand-written backward).
    """
    gh = linear(h, weight_hh, bias_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    if trace is not None:
        trace.update(r=r, z=z, n=n, h_n=h_n)
    return (1 - z) * n + z * h


def gru_step(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> Tensor:
    """One GRU step from the raw input ``x``."""
    return gru_update(linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh)


class GRU(RecurrentCell):
    r"""The gated recurrent unit.

    .. math::
        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    Args:
        input_size: features of ``x`` (``H_in``).
        hidden_size: features of ``h`` (``H_out``).
        bias: if ``False``, no ``b_ih`` and ``b_hh``; ``"single"``: only ``b_ih``.
        init: initialiser name (see :mod:`rnnlab.cells.init`).
        init_std: standard deviation for ``init="normal"``.

    Shapes:
        - x: ``(N, H_in)``; h and h': ``(N, H_out)``.
        - weight_ih ``(3*H_out, H_in)``, weight_hh ``(3*H_out, H_out)``, biases
          ``(3*H_out)``, rows stacked as ``W_r | W_z | W_n``.
    """

    name: ClassVar[str] = "gru"
    recurrence = staticmethod(gru_update)
    gates: ClassVar[int] = 3
    native: ClassVar[str | None] = "GRU"

    def update(self, gi: Tensor, state: Tensor) -> Tensor:
        return gru_update(gi, state, self.weight_hh, self.bias_hh)
