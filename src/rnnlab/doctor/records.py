"""What the watcher records: plain data, no judgement.

One :class:`Observations` per watched run holds the recurrent calls that matter (the
last of each module per iteration), the carries found between them, the loss and
gradient series and the copy of the model and batch the probes run on afterwards.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from rnnlab.doctor.findings import Location


class BudgetSpent(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside the user's script once the step or time budget is spent.

    It derives from ``BaseException`` so that a script's own ``except Exception``
    does not swallow it; a bare ``except:`` that does is caught again at the next hook,
    and in the end by the runner's watchdog.
    """


def is_recurrent(module: nn.Module) -> bool:
    """A layer that runs a whole sequence: ``torch.nn.RNN/LSTM/GRU`` or rnnlab's
    ``Recurrent``."""
    if isinstance(module, nn.RNNBase):
        return True
    recurrent = _rnnlab_types()[0]
    return recurrent is not None and isinstance(module, recurrent)


def is_cell(module: nn.Module) -> bool:
    """A cell that runs one time step, driven by a loop: ``torch.nn.RNNCell/LSTMCell/
    GRUCell`` or an rnnlab cell."""
    if isinstance(module, nn.RNNCellBase):
        return True
    cell = _rnnlab_types()[1]
    return cell is not None and isinstance(module, cell)


@functools.lru_cache(maxsize=1)
def _rnnlab_types() -> tuple[type | None, type | None]:
    try:
        from rnnlab.cells.base import RecurrentCell
        from rnnlab.layers import Recurrent
    except ImportError:
        return None, None
    return Recurrent, RecurrentCell


def describe(module: nn.Module) -> str:
    """A one-line description: ``LSTM(1, 16, batch_first=True)``."""
    extra = module.extra_repr().replace("\n", " ")
    return f"{type(module).__name__}({extra})"


def cell_kind(module: nn.Module) -> str:
    """``"srn"``, ``"lstm"``, ``"gru"`` or ``"residual-srn"``: the recurrence a layer or
    cell runs, which decides what is normal for its gradients through time."""
    mode = getattr(module, "mode", None)  # torch.nn.RNN/LSTM/GRU
    if isinstance(mode, str):
        return "srn" if mode.startswith("RNN") else mode.lower()
    cls = getattr(module, "cell_cls", None)  # rnnlab Recurrent
    name = getattr(cls, "name", "") or getattr(module, "name", "")  # ... or an rnnlab cell
    if isinstance(name, str) and name:
        return name
    text = type(module).__name__.lower()
    for kind in ("lstm", "gru"):
        if kind in text:
            return kind
    return "srn"


def flat_state(state: Any) -> list[Tensor]:
    """The tensors of a state: ``h`` or ``(h, c)``; empty for ``None``."""
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for t in state if isinstance(t, Tensor)]
    return []


@dataclass
class RecurrentCall:
    """One outermost call of a recurrent layer, or one step of a cell."""

    index: int
    iteration: int
    module_id: int
    module: str
    batch_first: bool
    cell: bool
    input: Tensor | None
    input_shape: tuple[int, ...] | None
    final: list[Tensor]
    where: list[Location]  # innermost first
    root_input: Tensor | None = None
    shuffled: bool = False  # the batch of this iteration came from a shuffling DataLoader


@dataclass
class StateCarry:
    """A call whose initial state is the final state of a call in an earlier iteration."""

    index: int
    previous: int
    iteration: int
    previous_iteration: int
    how: str  # "same storage" | "equal values"
    kind: str  # "repeated" | "continuous" | "unrelated" | "undecidable"
    numbers: dict[str, Any]
    where: list[Location]
    calls: tuple[RecurrentCall, RecurrentCall] | None = None
    prev_target: Tensor | None = None
    target: Tensor | None = None


@dataclass
class RootCall:
    """The top-level module around a recurrent call, with a copy of its arguments."""

    module: nn.Module
    args: tuple
    kwargs: dict
    recurrent: nn.Module
    recurrent_input_shape: tuple[int, ...] | None
    batch_first: bool
    iteration: int
    where: list[Location]
    recurrent_input: Tensor | None = None
    state_shapes: list[tuple[int, ...]] = field(default_factory=list)


@dataclass
class Observations:
    """What a watcher saw."""

    calls: int = 0
    steps: int = 0
    step_started: bool = False  # an optimizer step began (its hooks are the step count)
    in_step: bool = False
    backward_calls: int = 0
    modules: dict[int, str] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)
    cells: set[int] = field(default_factory=set)
    carries: list[StateCarry] = field(default_factory=list)
    carried: set[int] = field(default_factory=set)  # every iteration that got a carry
    root: RootCall | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    loss_where: list[Location] = field(default_factory=list)
    nonfinite: list[tuple[int, float, list[Location]]] = field(default_factory=list)
    metric: list[tuple[int, float]] = field(default_factory=list)
    metric_name: str = ""
    last_loss_call: tuple[Tensor, Tensor] | None = None
    targets: dict[int, Tensor] = field(default_factory=dict)
    grad_norms: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    grad_norm_rows: list[tuple[int, list[str], Any]] = field(default_factory=list)
    state_grads: list[dict[str, Any]] = field(default_factory=list)
    loader_batch_sizes: list[int] = field(default_factory=list)
    loader_shuffled: list[bool] = field(default_factory=list)
    clipped: bool = False
    seconds: float = 0.0
