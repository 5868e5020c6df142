"""What every recurrent cell shares: torch's parameter layout and the step protocol.

A cell computes one time step, ``(x_t, state) -> (y_t, new_state)``; nothing about
time lives here (the loop, masking and directions belong to
:class:`rnnlab.layers.Recurrent`). Parameters are named and shaped exactly as in
``torch.nn.RNNCell/LSTMCell/GRUCell`` (``weight_ih [G*H, H_in]``, ``weight_hh [G*H, H]``,
``bias_ih [G*H]``, ``bias_hh [G*H]``) and registered in the same order, so state dicts
move both ways and the ``torch`` initialiser draws the same numbers as torch does.

A step is split in two so a layer can project the whole sequence at once:
:meth:`RecurrentCell.project` computes ``W_ih x + b_ih`` (for one step or all steps),
and :meth:`RecurrentCell.update` applies the recurrence to that projection. Both call
pure functions in each cell's file (``srn_update``, ``lstm_update``, ...) that take the
weights as arguments; :func:`linear` lets those functions run with a leading model
dimension on every weight, which is how the lock-step engine reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.cells.init import initialise
from rnnlab.errors import ensure

State = Tensor | tuple[Tensor, Tensor]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight^T + bias``, also for a stack of weights.

    With a 2-D ``weight [O, I]`` this is :func:`torch.nn.functional.linear`. With
    ``weight [M, O, I]`` (one matrix per model), ``x`` is ``[M, N, I]``, ``bias``
    ``[M, O]`` and the result ``[M, N, O]``: the engine trains ``M`` models at once.
    """
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    out = torch.matmul(x, weight.transpose(-1, -2))
    if bias is not None:
        out = out + bias.unsqueeze(-2)
    return out


class RecurrentCell(nn.Module):
    """Base class of the hand-written cells (see the module docstring).

    Subclasses set ``name``, ``gates`` (rows of ``weight_ih`` per hidden unit),
    ``native`` (the ``torch.nn`` module with the same recurrence, or ``None``),
    ``recurrence`` (the pure update function of their file, ``(gi, state, weight_hh,
    bias_hh, **options) -> state``, which the lock-step engine calls with stacked
    weights) and implement :meth:`update` with it.
    """

    name: ClassVar[str] = ""
    gates: ClassVar[int] = 1
    native: ClassVar[str | None] = None
    recurrence: ClassVar[Callable[..., State]]
    state_is_tuple: ClassVar[bool] = False

    def __init__(self, input_size: int, hidden_size: int, bias: bool | str = True,
                 init: str = "torch", init_std: float = 0.001) -> None:
        super().__init__()
        ensure(bias in (True, False, "single"),
              f"bias must be true, false or 'single', got {bias!r}")
        ensure(isinstance(input_size, int) and input_size >= 1,
              f"input_size must be a positive integer, got {input_size!r}")
        ensure(isinstance(hidden_size, int) and hidden_size >= 1,
              f"hidden_size must be a positive integer, got {hidden_size!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.init = init
        self.init_std = init_std
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        # bias="single": one bias vector, kept as bias_ih (b_hh absent), as the seed
        # 004 SRN writes tanh(x W + h U + b); torch.nn has no such layer.
        self.register_parameter("bias_ih", nn.Parameter(torch.empty(rows)) if bias else None)
        self.register_parameter("bias_hh",
                                nn.Parameter(torch.empty(rows)) if bias is True else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise with the initialiser named by ``init`` (torch's global RNG)."""
        initialise(self, self.init, std=self.init_std)

    def initial_state(self, batch: int, *, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> State:
        """The zero state for ``batch`` sequences: ``h [N, H]`` (or ``(h, c)``)."""
        ref = self.weight_hh
        h = torch.zeros(batch, self.hidden_size, device=device or ref.device,
                        dtype=dtype or ref.dtype)
        return (h, h.clone()) if self.state_is_tuple else h

    def project(self, x: Tensor) -> Tensor:
        """``W_ih x + b_ih`` for ``x [..., H_in]``: one step or a whole sequence at once."""
        return linear(x, self.weight_ih, self.bias_ih)

    def update(self, gi: Tensor, state: State) -> State:
        """The new state from the input projection ``gi [N, G*H]`` and ``state``."""
        raise NotImplementedError

    @staticmethod
    def output(state: State) -> Tensor:
        """What the cell emits at a step: ``h`` (the first element of an LSTM state)."""
        return state[0] if isinstance(state, tuple) else state

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        ensure(x.dim() == 2 and x.shape[1] == self.input_size,
              f"expected cell input of shape (N, {self.input_size}), got {tuple(x.shape)}")
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        new = self.update(self.project(x), state)
        return self.output(new), new

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            text += f", bias={self.bias!r}"
        return text + f", init={self.init!r}"
