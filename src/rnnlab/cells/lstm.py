"""The long short-term memory cell, as ``torch.nn.LSTMCell`` (gates i, f, g, o).

``lstm_update`` / ``lstm_step`` are the recurrence as pure functions of the weights,
reused by the lock-step engine with stacked weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rnnlab.cells.base import RecurrentCell, linear


def lstm_update(gi: Tensor, state: tuple[Tensor, Tensor], weight_hh: Tensor,
                bias_hh: Tensor | None,
                trace: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """The new ``(h, c)`` from ``gi = W_ih x + b_ih`` and the state ``(h, c)``.

    ``trace``, when given, receives the gates ``i, f, g, o``, the new ``c`` and
    ``tanh_c`` (what a hand-written backward pass needs).
    """
    h, c = state
    i, f, g, o = (gi + linear(h, weight_hh, bias_hh)).chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    tanh_c = torch.tanh(c)
    if trace is not None:
        trace.update(i=i, f=f, g=g, o=o, c=c, tanh_c=tanh_c)
    return o * tanh_c, c


def lstm_step(x: Tensor, state: tuple[Tensor, Tensor], weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor | None = None,
              bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step from the raw input ``x``."""
    return lstm_update(linear(x, weight_ih, bias_ih), state, weight_hh, bias_hh)


class LSTM(RecurrentCell):
    r"""The long short-term memory cell.

    .. math::
        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c')
        \end{array}

    The cell state ``c`` is updated additively, gated by ``f``: that path is what
    carries information (and gradient) across many steps.

    Args:
        input_size: features of ``x`` (``H_in``).
        hidden_size: features of ``h`` and ``c`` (``H_out``).
        bias: if ``False``, no ``b_ih`` and ``b_hh``; ``"single"``: only ``b_ih``.
        init: initialiser name (see :mod:`rnnlab.cells.init`).
        init_std: standard deviation for ``init="normal"``.

    Shapes:
        - x: ``(N, H_in)``; state ``(h, c)`` and ``(h', c')``: each ``(N, H_out)``.
        - weight_ih ``(4*H_out, H_in)``, weight_hh ``(4*H_out, H_out)``, biases
          ``(4*H_out)``, rows stacked as ``W_i | W_f | W_g | W_o``.
    """

    name: ClassVar[str] = "lstm"
    recurrence = staticmethod(lstm_update)
    gates: ClassVar[int] = 4
    native: ClassVar[str | None] = "LSTM"
    state_is_tuple: ClassVar[bool] = True

    def update(self, gi: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return lstm_update(gi, state, self.weight_hh, self.bias_hh)
