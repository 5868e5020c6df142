"""Experiments: grids of training runs with results files and reports.

``memory`` is the memory-capacity experiment (``rnnlab memory``)::

    from rnnlab.experiments import MemoryConfig, run_memory
    outcome = run_memory(MemoryConfig(cells=("srn", "lstm"), lengths=(5, 20)), "runs/m")
    print(outcome.summary["cells"]["lstm"]["horizon_text"])

Several tasks, your own models and hyper-parameter grids are fields of the same
config (``tasks=("digitsum", "copy")``, ``models={"mine": build}``, ``lr=(1e-3, 5e-3)``;
see docs/memory-suite.md); ``outcome.summary["tasks"][task]["models"]`` holds them.
The grid is :mod:`~rnnlab.experiments.grid`, the models and tasks of a run
:mod:`~rnnlab.experiments.models`, the runs' results and horizons are
:mod:`~rnnlab.experiments.results`, the driver is :mod:`~rnnlab.experiments.memory`.
"""

from rnnlab.experiments.grid import DEFAULT_CELLS, DEFAULT_LENGTHS, MemoryConfig, RunSpec
from rnnlab.experiments.memory import MemoryOutcome, run_memory
from rnnlab.experiments.results import (
    HORIZON_DEFINITION,
    RunResult,
    horizon_sentence,
    load_results,
    memory_horizon,
    summarize,
)

__all__ = [
    "DEFAULT_CELLS", "DEFAULT_LENGTHS", "HORIZON_DEFINITION", "MemoryConfig",
    "MemoryOutcome", "RunResult", "RunSpec", "horizon_sentence", "load_results",
    "memory_horizon", "run_memory", "summarize",
]
