"""``Recurrent``: one layer that unrolls any cell over time, like ``torch.nn.RNN``.

The layer owns everything about time: the loop, the initial state, stacking layers,
the reverse direction and variable lengths. Lengths work by masking the state update:
past a sequence's end its state is held and its output is zero. A reverse direction
therefore holds its initial state over the padding and starts at each sequence's own
last valid step, exactly like torch's packed sequences.

Two backends compute the same function with the same parameters. ``"python"`` runs the
hand-written cells step by step (readable, every cell). ``"native"`` calls
``torch.nn.RNN/LSTM/GRU`` functionally on this layer's own parameters (fast; not for
the residual SRN, which torch lacks); gradients reach this layer's parameters either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.cells import RecurrentCell, State, get_cell
from rnnlab.errors import RnnlabError, ensure

BACKENDS = ("python", "native")
_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class Recurrent(nn.Module):
    r"""A stack of recurrent cells unrolled over a sequence.

    Args:
        cell: a cell name (``"srn"``, ``"residual-srn"``, ``"lstm"``, ``"gru"``) or class.
        input_size: features of each input step (``H_in``).
        hidden_size: features of each cell's state (``H_out``).
        num_layers: cells stacked in depth; layer ``k > 0`` reads layer ``k-1``'s outputs.
        bidirectional: add a second cell per layer that reads the sequence backwards.
        batch_first: inputs and outputs are ``(N, L, ...)`` rather than ``(L, N, ...)``.
        backend: ``"python"`` (hand cells) or ``"native"`` (``torch.nn`` kernels).
        **cell_kwargs: passed to every cell (``bias``, ``init``, ``init_std``,
            ``nonlinearity``).

    Shapes (``D = 2`` if bidirectional else 1):
        - x: ``(N, L, H_in)`` (``(L, N, H_in)`` with ``batch_first=False``).
        - state: ``(D*num_layers, N, H_out)``, or a pair of them for the LSTM.
        - lengths: ``(N,)``, each in ``1..L``.
        - outputs: ``(N, L, D*H_out)`` (``(L, N, D*H_out)``), zero past each length.
        - final_state: like ``state``; index ``layer*D + direction``.

    Cells live in ``self.cells`` in that order, so their state-dict names are
    ``cells.{layer*D + direction}.weight_ih`` etc.; :meth:`torch_state_dict` and
    :meth:`load_torch_state_dict` translate to torch's ``weight_ih_l0_reverse`` names.
    With ``init="torch"`` a seeded layer draws the same weights as a seeded torch module.
    """

    def __init__(self, cell: str | type[RecurrentCell], input_size: int, hidden_size: int,
                 *, num_layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = True, backend: str = "python",
                 **cell_kwargs: Any) -> None:
        super().__init__()
        cell_cls = get_cell(cell) if isinstance(cell, str) else cell
        ensure(isinstance(num_layers, int) and num_layers >= 1,
              f"num_layers must be a positive integer, got {num_layers!r}")
        ensure(backend in BACKENDS,
              f"unknown backend {backend!r}; known backends: " + ", ".join(BACKENDS))
        if backend == "native" and cell_cls.native is None:
            raise RnnlabError(f"cell {cell_cls.name!r} has no torch.nn twin, so it cannot "
                              "run with backend='native'; use backend='python'")
        if backend == "native" and cell_kwargs.get("bias") == "single":
            raise RnnlabError("bias='single' (one bias vector) has no torch.nn twin, so it "
                              "cannot run with backend='native'; use backend='python'")
        self.cell_cls = cell_cls
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.batch_first = batch_first
        self.backend = backend
        # Built in torch's parameter order (layer, then direction) so that seeded
        # initialisation draws the same numbers as torch.nn.RNN/LSTM/GRU.
        self.cells = nn.ModuleList(
            cell_cls(input_size if layer == 0 else self.num_directions * hidden_size,
                     hidden_size, **cell_kwargs)
            for layer in range(num_layers) for _ in range(self.num_directions)
        )
        # Built on first native use; a tuple keeps it out of .parameters() and state_dict.
        self._native: tuple[nn.Module, ...] = ()

    @property
    def output_size(self) -> int:
        """Features of each output step: ``D * H_out``."""
        return self.num_directions * self.hidden_size

    def extra_repr(self) -> str:
        text = f"{self.cell_cls.name!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.bidirectional:
            text += ", bidirectional=True"
        if not self.batch_first:
            text += ", batch_first=False"
        return text + f", backend={self.backend!r}"

    # --- torch interchange ----------------------------------------------------------
    def _torch_names(self) -> list[tuple[int, str, str]]:
        """``(cell index, parameter name, torch name)`` for every parameter."""
        names = []
        for index, cell in enumerate(self.cells):
            layer, direction = divmod(index, self.num_directions)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            names += [(index, p, p + suffix) for p in _PARAMS if getattr(cell, p) is not None]
        return names

    def torch_state_dict(self) -> dict[str, Tensor]:
        """This layer's parameters under ``torch.nn.RNN/LSTM/GRU`` names."""
        return {theirs: getattr(self.cells[i], p).detach()
                for i, p, theirs in self._torch_names()}

    def load_torch_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load parameters saved by ``torch.nn.RNN/LSTM/GRU`` (``weight_ih_l0``, ...)."""
        names = self._torch_names()
        missing = [theirs for _, _, theirs in names if theirs not in state_dict]
        unexpected = sorted(set(state_dict) - {theirs for _, _, theirs in names})
        if missing or unexpected:
            raise RnnlabError(f"torch state dict does not fit this layer: missing "
                              f"{missing or 'nothing'}, unexpected {unexpected or 'nothing'}")
        self.load_state_dict({f"cells.{i}.{p}": state_dict[theirs] for i, p, theirs in names})

    def _torch_module(self) -> nn.Module:
        native = self.cell_cls.native
        if native is None:
            raise RnnlabError(f"cell {self.cell_cls.name!r} has no torch.nn twin")
        first = self.cells[0]
        if first.bias == "single":
            raise RnnlabError("bias='single' (one bias vector) has no torch.nn twin")
        kwargs: dict[str, Any] = {}
        if native == "RNN":
            kwargs["nonlinearity"] = first.nonlinearity
        return getattr(nn, native)(self.input_size, self.hidden_size,
                                   num_layers=self.num_layers, bias=first.bias,
                                   batch_first=self.batch_first,
                                   bidirectional=self.bidirectional, **kwargs)

    def to_torch(self) -> nn.Module:
        """A new ``torch.nn.RNN/LSTM/GRU`` with a copy of this layer's parameters."""
        module = self._torch_module()
        ref = self.cells[0].weight_ih
        module.to(device=ref.device, dtype=ref.dtype)
        module.load_state_dict({k: v.detach().clone() for k, v in self.torch_state_dict().items()})
        return module

    # --- forward -------------------------------------------------------------------
    def forward(self, x: Tensor, state: State | None = None,
                lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, State]:
        n, seq_len = self._check_input(x)
        lengths = self._check_lengths(lengths, n, seq_len)
        self._check_state(state, n)
        if self.backend == "native":
            return self._forward_native(x, state, lengths)
        return self._forward_python(x, state, lengths)

    def _forward_python(self, x: Tensor, state: State | None,
                        lengths: Tensor | None) -> tuple[Tensor, State]:
        if not self.batch_first:
            x = x.transpose(0, 1)
        n, seq_len = x.shape[0], x.shape[1]
        # mask[t] is (N, 1): which sequences are still running at step t.
        mask = None
        if lengths is not None:
            steps = torch.arange(seq_len, device=x.device)
            mask = (steps.unsqueeze(1) < lengths.to(x.device).unsqueeze(0)).unsqueeze(-1)
        finals: list[State] = []
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                cell = self.cells[index]
                start = (cell.initial_state(n, device=x.device, dtype=x.dtype)
                         if state is None else _select(state, index))
                out, final = _unroll(cell, layer_input, start, mask, reverse=direction == 1)
                outs.append(out)
                finals.append(final)
            layer_input = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        outputs = layer_input if self.batch_first else layer_input.transpose(0, 1)
        if self.cell_cls.state_is_tuple:
            final_state: State = (torch.stack([f[0] for f in finals]),
                                  torch.stack([f[1] for f in finals]))
        else:
            final_state = torch.stack(finals)
        return outputs, final_state

    def _forward_native(self, x: Tensor, state: State | None,
                        lengths: Tensor | None) -> tuple[Tensor, State]:
        if not self._native:
            module = self._torch_module().to("meta")
            # On CUDA, torch would re-point the parameters it is given into one flat
            # buffer in place on every call; these are this layer's own parameters,
            # so leave them alone (cuDNN then copies the weights itself).
            module.flatten_parameters = _keep_parameters_apart
            self._native = (module,)
        module = self._native[0]
        params = {theirs: getattr(self.cells[i], p) for i, p, theirs in self._torch_names()}
        args: tuple[Any, ...] = (x,) if state is None else (x, state)
        if lengths is None:
            return functional_call(module, params, args)
        seq_len = x.shape[1] if self.batch_first else x.shape[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=self.batch_first,
                                      enforce_sorted=False)
        out, final = functional_call(module, params, (packed,) + args[1:])
        outputs, _ = pad_packed_sequence(out, batch_first=self.batch_first,
                                         total_length=seq_len)
        return outputs, final

    # --- validation ----------------------------------------------------------------
    def _check_input(self, x: Tensor) -> tuple[int, int]:
        layout = "(N, L, {})" if self.batch_first else "(L, N, {})"
        expected = layout.format(self.input_size)
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise RnnlabError(f"expected input of shape {expected} with "
                              f"batch_first={self.batch_first}, got {got}")
        ensure(x.is_floating_point(),
              f"expected a floating-point input, got {x.dtype}; token ids need an "
              "embedding first")
        n, seq_len = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        ensure(n >= 1 and seq_len >= 1,
              f"expected at least one sequence of at least one step, got shape "
              f"{tuple(x.shape)}")
        return n, seq_len

    @staticmethod
    def _check_lengths(lengths: Tensor | Sequence[int] | None, n: int,
                       seq_len: int) -> Tensor | None:
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths)
        ensure(lengths.dim() == 1 and lengths.shape[0] == n,
              f"expected lengths of shape ({n},), one per sequence, got {tuple(lengths.shape)}")
        ensure(not lengths.is_floating_point() and not lengths.is_complex(),
              f"lengths must be integers, got {lengths.dtype}")
        lo, hi = int(lengths.min()), int(lengths.max())
        ensure(lo >= 1 and hi <= seq_len,
              f"lengths must lie in 1..{seq_len} (the input's length), got {lo}..{hi}")
        return None if lo == seq_len else lengths.long()  # all full: nothing to mask

    def _check_state(self, state: State | None, n: int) -> None:
        if state is None:
            return
        expected = (self.num_directions * self.num_layers, n, self.hidden_size)
        parts = state if isinstance(state, tuple) else (state,)
        want = 2 if self.cell_cls.state_is_tuple else 1
        ensure(len(parts) == want and all(isinstance(p, Tensor) for p in parts),
              f"expected the {self.cell_cls.name} state as "
              + ("a pair (h_0, c_0) of tensors" if want == 2 else "one tensor h_0"))
        for p in parts:
            ensure(tuple(p.shape) == expected,
                  f"expected an initial state of shape {expected}, got {tuple(p.shape)}")


def _keep_parameters_apart() -> None:
    """Stands in for ``flatten_parameters`` on the native module (see ``_forward_native``)."""


def _select(state: State, index: int) -> State:
    if isinstance(state, tuple):
        return state[0][index], state[1][index]
    return state[index]


def _unroll(cell: RecurrentCell, x: Tensor, state: State, mask: Tensor | None,
            reverse: bool) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x (N, L, H_in)``; returns outputs ``(N, L, H)`` and final state."""
    gi = cell.project(x)  # all steps' input projections in one matmul
    seq_len = x.shape[1]
    outputs: list[Tensor] = []
    for t in (range(seq_len - 1, -1, -1) if reverse else range(seq_len)):
        new = cell.update(gi[:, t], state)
        if mask is None:
            state = new
            outputs.append(cell.output(new))
        else:
            keep = mask[t]
            state = _where(keep, new, state)
            outputs.append(cell.output(new).masked_fill(~keep, 0.0))
    if reverse:
        outputs.reverse()
    return torch.stack(outputs, dim=1), state


def _where(keep: Tensor, new: State, old: State) -> State:
    if isinstance(new, tuple):
        return torch.where(keep, new[0], old[0]), torch.where(keep, new[1], old[1])
    return torch.where(keep, new, old)
