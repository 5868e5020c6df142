"""Stateful training over streams: truncated backpropagation through time (TBPTT).

With ``TrainConfig(tbptt=k)`` the rows of the training split are parallel *streams*
``(S, T, ...)`` with per-step targets ``(S, T[, F])``. Optimiser step ``j`` of an
epoch trains on steps ``[j*k, (j+1)*k)`` of every stream at once; the recurrent
state the chunk ends in is carried into the next chunk *detached* (the gradient is
cut, the memory is not), and it is reset to zeros at the start of every epoch, which
is where every stream begins. Keras calls this ``stateful=True``; PyTorch's
word-language-model example calls the cut ``repackage_hidden``.

Only sequences that really continue one another belong in one stream (one long
signal cut into chunks). Independent sequences get their own stream, or a fresh
state: carrying a state across them is the leak the doctor reports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData
from rnnlab.train.data import batch_ranges


def chunk_ranges(length: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of every chunk along a stream of ``length`` steps (last may be short)."""
    return batch_ranges(length, chunk)


def check_streams(split: SplitData, name: str) -> None:
    """Streams need per-step targets and one length (a stream has no padding)."""
    ensure(split.inputs.dim() >= 2 and split.targets.dim() >= 2
          and split.targets.shape[1] == split.inputs.shape[1],
          f"stateful training (tbptt) needs {name} streams (S, T, ...) with a target at "
          f"every step (S, T[, F]); got inputs {tuple(split.inputs.shape)} and targets "
          f"{tuple(split.targets.shape)}")
    ensure(split.lengths is None or bool((split.lengths == split.inputs.shape[1]).all()),
          f"stateful training (tbptt) needs {name} streams of one length; pad nothing, "
          "cut the streams to one length instead")


def detach(state: Any) -> Any:
    """A recurrent state cut from the graph (a tensor or an LSTM ``(h, c)`` pair)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def to_list(state: Any) -> list[Tensor] | None:
    """A state as the checkpoint keeps it: ``[h]`` or ``[h, c]`` (copies)."""
    if state is None:
        return None
    parts = state if isinstance(state, tuple) else (state,)
    return [p.detach().clone() for p in parts]


def from_list(parts: list[Tensor] | None) -> Any:
    """The inverse of :func:`to_list`."""
    if parts is None:
        return None
    return tuple(parts) if len(parts) == 2 else parts[0]


def rows_of(state: Any, rows: slice) -> Any:
    """The state of some streams only (the batch is dimension 1 of ``(D*layers, N, H)``)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


def run_stream(model: nn.Module, inputs: Tensor, chunk: int, state: Any = None,
               carry: bool = True) -> tuple[Tensor, Any]:
    """Outputs along whole streams ``inputs (S, T, ...)``, ``chunk`` steps per call.

    ``carry``: the state goes from each chunk into the next (starting from ``state``);
    otherwise every chunk starts from a fresh state. Returns the outputs ``(S, T, ...)``
    and the final state. No gradient: this is for evaluation and prediction.
    """
    outputs = []
    with torch.no_grad():
        for start, stop in chunk_ranges(inputs.shape[1], chunk):
            output, final = model(inputs[:, start:stop], state=state if carry else None,
                                  return_state=True)
            state = final
            outputs.append(output)
    return torch.cat(outputs, dim=1), state


def as_streams(split: SplitData, streams: int = 1) -> SplitData:
    """Sequences ``(N, L, ...)`` laid end to end into ``streams`` parallel streams.

    Sequence ``i`` goes to stream ``i % streams``, so feeding the streams chunk by chunk
    (chunk length ``L``) feeds the sequences ``streams`` at a time in their order, as a
    loop over consecutive batches does. ``N`` must be a multiple of ``streams``.
    """
    n, length = split.inputs.shape[0], split.inputs.shape[1]
    ensure(n % streams == 0, f"{n} sequences cannot be dealt into {streams} streams evenly; "
          f"use a multiple of {streams}")

    def lay(t: Tensor) -> Tensor:
        rest = tuple(t.shape[2:])
        return (t.reshape(n // streams, streams, length, *rest).transpose(0, 1)
                .reshape(streams, (n // streams) * length, *rest))

    return SplitData(lay(split.inputs), lay(split.targets))


def from_streams(values: Tensor, length: int) -> Tensor:
    """The inverse of :func:`as_streams` for outputs ``(S, T, ...)``: ``(N, length, ...)``."""
    streams, total = values.shape[0], values.shape[1]
    rest = tuple(values.shape[2:])
    per = total // length
    return (values.reshape(streams, per, length, *rest).transpose(0, 1)
            .reshape(streams * per, length, *rest))
