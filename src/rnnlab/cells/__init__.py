"""Recurrent cells written out step by step, with torch's parameter names.

``CELLS`` maps each cell's name to its class; :func:`make_cell` builds one by name.
Each cell file also holds its recurrence as pure functions of the weights
(``srn_update``, ``lstm_step``, ...) for the lock-step engine.
"""

from __future__ import annotations

from typing import Any

from rnnlab.cells.base import RecurrentCell, State, linear
from rnnlab.cells.gru import GRU, gru_step, gru_update
from rnnlab.cells.init import INITS, init_names, initialise
from rnnlab.cells.lstm import LSTM, lstm_step, lstm_update
from rnnlab.cells.residual_srn import ResidualSRN, residual_srn_step, residual_srn_update
from rnnlab.cells.srn import SRN, srn_step, srn_update
from rnnlab.errors import RnnlabError

CELLS: dict[str, type[RecurrentCell]] = {
    cls.name: cls for cls in (SRN, ResidualSRN, LSTM, GRU)
}


def cell_names() -> list[str]:
    """The cell names, sorted: ``gru, lstm, residual-srn, srn``."""
    return sorted(CELLS)


def get_cell(name: str) -> type[RecurrentCell]:
    """The cell class called ``name``; an unknown name raises :class:`RnnlabError`."""
    if name not in CELLS:
        raise RnnlabError(f"unknown cell {name!r}; known cells: " + ", ".join(cell_names()))
    return CELLS[name]


def make_cell(name: str, input_size: int, hidden_size: int, **kwargs: Any) -> RecurrentCell:
    """A new cell of kind ``name`` (``bias``, ``init``, ``init_std``, ... as keywords)."""
    return get_cell(name)(input_size, hidden_size, **kwargs)


__all__ = [
    "CELLS", "GRU", "INITS", "LSTM", "SRN", "RecurrentCell", "ResidualSRN", "State",
    "cell_names", "get_cell", "gru_step", "gru_update", "init_names", "initialise",
    "linear", "lstm_step", "lstm_update", "make_cell", "residual_srn_step",
    "residual_srn_update", "srn_step", "srn_update",
]
