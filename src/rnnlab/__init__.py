"""rnnlab: a laboratory for recurrent neural networks.

Build a cell, train it on a memory task, measure how far back it remembers, and
diagnose why it doesn't.

The names below are imported on first use (PEP 562), so ``import rnnlab`` and
``rnnlab --version`` do not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CELLS": "rnnlab.cells",
    "make_cell": "rnnlab.cells",
    "RnnlabError": "rnnlab.errors",
    "Recurrent": "rnnlab.layers",
    "ModelConfig": "rnnlab.models",
    "build_model": "rnnlab.models",
    "seed_everything": "rnnlab.seeding",
    "Run": "rnnlab.runs",
    "load_run": "rnnlab.runs",
    "export_run": "rnnlab.runs",
}

__all__ = [
    "CELLS", "ModelConfig", "Recurrent", "RnnlabError", "Run", "__version__", "build_model",
    "export_run", "load_run", "make_cell", "seed_everything",
]

if TYPE_CHECKING:
    from rnnlab.cells import CELLS, make_cell
    from rnnlab.errors import RnnlabError
    from rnnlab.layers import Recurrent
    from rnnlab.models import ModelConfig, build_model
    from rnnlab.runs import Run, export_run, load_run
    from rnnlab.seeding import seed_everything


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
