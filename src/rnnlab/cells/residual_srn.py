"""The residual SRN of seed 004 (NNDL eq. 6.50): the state carries itself forward.

``residual_srn_update`` / ``residual_srn_step`` are the recurrence as pure functions
of the weights, reused by the lock-step engine with stacked weights.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from rnnlab.cells.base import linear
from rnnlab.cells.srn import SRN, srn_update


def residual_srn_update(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None,
                        nonlinearity: str = "tanh",
                        trace: dict[str, Tensor] | None = None) -> Tensor:
    """``h + act(gi + W_hh h + b_hh)`` where ``gi = W_ih x + b_ih`` (``trace``: ``act``)."""
    return h + srn_update(gi, h, weight_hh, bias_hh, nonlinearity, trace)


def residual_srn_step(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
                      bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
                      nonlinearity: str = "tanh") -> Tensor:
    """One residual SRN step from the raw input ``x``."""
    return residual_srn_update(linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh,
                               nonlinearity)


class ResidualSRN(SRN):
    r"""The residual SRN: an SRN whose state also passes straight to the next step.

    .. math::
        h' = h + \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    The identity path lets the gradient through time pass unattenuated, which is why
    it remembers the first digits of a DigitSum sequence where the plain SRN forgets.
    The state is added to a hidden-size vector, so the state size is ``H_out``; the
    input size is free. The parameters are an ``nn.RNNCell``'s, but there is no torch
    twin to run it natively.

    Args:
        input_size: features of ``x`` (``H_in``).
        hidden_size: features of ``h`` (``H_out``).
        bias: if ``False``, no ``b_ih`` and ``b_hh``; ``"single"``: only ``b_ih``.
        init: initialiser name (see :mod:`rnnlab.cells.init`).
        init_std: standard deviation for ``init="normal"``.
        nonlinearity: ``"tanh"`` (the equation) or ``"relu"``.

    Shapes:
        - x: ``(N, H_in)``; h and h': ``(N, H_out)``.
        - weight_ih ``(H_out, H_in)``, weight_hh ``(H_out, H_out)``, biases ``(H_out)``.
    """

    name: ClassVar[str] = "residual-srn"
    recurrence = staticmethod(residual_srn_update)
    native: ClassVar[str | None] = None

    def update(self, gi: Tensor, state: Tensor) -> Tensor:
        return residual_srn_update(gi, state, self.weight_hh, self.bias_hh, self.nonlinearity)
