"""Stand-ins for ``torch.nn.RNN/LSTM/GRU`` that ``torch.func.vmap`` can batch.

``vmap`` has no batching rule for torch's fused recurrent kernels (``aten::lstm``
and friends), so a user's model holding an ``nn.LSTM`` cannot be vmapped as it
is. :func:`vmappable` returns a copy of the model in which every such module is
replaced by a :class:`TwinRNN`: the same parameters under the same names (so
``functional_call`` feeds it the stacked copies' weights), the same equations and
gate order (LSTM i, f, g, o; GRU r, z, n), the same return values, written as a
step loop of plain tensor operations. What a twin cannot imitate (packed
sequences, ``proj_size``, dropout between layers while training) raises, and the
lock-step trainer then falls back to the loop.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class TwinRNN(nn.Module):
    """The recurrence of an ``nn.RNN/LSTM/GRU`` as plain step-by-step operations."""

    def __init__(self, native: nn.RNNBase) -> None:
        super().__init__()
        if getattr(native, "proj_size", 0):
            raise NotImplementedError("an LSTM with proj_size has no lock-step twin")
        self.mode = native.mode
        self.hidden_size = native.hidden_size
        self.num_layers = native.num_layers
        self.num_directions = 2 if native.bidirectional else 1
        self.batch_first = native.batch_first
        self.dropout = native.dropout
        self.has_bias = native.bias
        for name in native._flat_weights_names:
            setattr(self, name, nn.Parameter(getattr(native, name).detach().clone()))

    def _weights(self, layer: int, direction: int) -> tuple[Tensor | None, ...]:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return tuple(getattr(self, n + suffix, None) for n in names)

    def _step(self, gi: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
        h, c = state
        gh = F.linear(h, w_hh, b_hh)
        if self.mode == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        if self.mode == "GRU":
            i_r, i_z, i_n = gi.chunk(3, dim=-1)
            h_r, h_z, h_n = gh.chunk(3, dim=-1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            return (1 - z) * n + z * h, c
        act = torch.tanh if self.mode == "RNN_TANH" else torch.relu
        return act(gi + gh), c

    def forward(self, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None):
        if not isinstance(x, Tensor):
            raise NotImplementedError("packed sequences have no lock-step twin")
        if self.dropout and self.training and self.num_layers > 1:
            raise NotImplementedError("dropout between layers has no lock-step twin")
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
        if not self.batch_first:
            x = x.transpose(0, 1)
        n, steps = x.shape[0], x.shape[1]
        rows = self.num_layers * self.num_directions
        if hx is None:
            zeros = x.new_zeros(rows, n, self.hidden_size)
            h0, c0 = zeros, zeros
        elif self.mode == "LSTM":
            h0, c0 = hx
        else:
            h0, c0 = hx, hx
        if unbatched and hx is not None:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        finals_h, finals_c = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
                gi = F.linear(layer_input, w_ih, b_ih)
                index = layer * self.num_directions + direction
                state = (h0[index], c0[index])
                order = range(steps - 1, -1, -1) if direction else range(steps)
                seq = []
                for t in order:
                    state = self._step(gi[:, t], state, w_hh, b_hh)
                    seq.append(state[0])
                if direction:
                    seq.reverse()
                outs.append(torch.stack(seq, dim=1))
                finals_h.append(state[0])
                finals_c.append(state[1])
            layer_input = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout)
        output = layer_input if self.batch_first else layer_input.transpose(0, 1)
        h_n = torch.stack(finals_h)
        c_n = torch.stack(finals_c)
        if unbatched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, ((h_n, c_n) if self.mode == "LSTM" else h_n)


def vmappable(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with each ``nn.RNN/LSTM/GRU`` replaced by its twin."""
    twin = copy.deepcopy(model)
    if isinstance(twin, nn.RNNBase):
        return TwinRNN(twin) if twin.mode in _GATES else twin
    for name, module in list(twin.named_modules()):
        if isinstance(module, nn.RNNBase) and module.mode in _GATES and name:
            parent_name, _, child = name.rpartition(".")
            parent = twin.get_submodule(parent_name) if parent_name else twin
            setattr(parent, child, TwinRNN(module))
    return twin
