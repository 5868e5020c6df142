"""rnnlab: a laboratory for recurrent neural networks.

Build a cell, train it on a memory task, measure how far back it remembers, and
diagnose why it doesn't.
"""

from rnnlab.cells import CELLS, make_cell
from rnnlab.errors import RnnlabError
from rnnlab.layers import Recurrent
from rnnlab.models import ModelConfig, build_model
from rnnlab.seeding import seed_everything

__version__ = "0.1.0"

__all__ = [
    "CELLS",
    "ModelConfig",
    "Recurrent",
    "RnnlabError",
    "build_model",
    "make_cell",
    "seed_everything",
    "__version__",
]
