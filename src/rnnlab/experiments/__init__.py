"""Experiments: grids of training runs with results files and reports.

``memory`` is the memory-capacity experiment (``rnnlab memory``)::

    from rnnlab.experiments import MemoryConfig, run_memory
    outcome = run_memory(MemoryConfig(cells=("srn", "lstm"), lengths=(5, 20)), "runs/m")
    print(outcome.summary["cells"]["lstm"]["horizon_text"])
"""

from rnnlab.experiments.memory import (
    DEFAULT_CELLS,
    DEFAULT_LENGTHS,
    HORIZON_DEFINITION,
    MemoryConfig,
    MemoryOutcome,
    RunResult,
    RunSpec,
    horizon_sentence,
    load_results,
    memory_horizon,
    run_memory,
    summarize,
)

__all__ = [
    "DEFAULT_CELLS", "DEFAULT_LENGTHS", "HORIZON_DEFINITION", "MemoryConfig",
    "MemoryOutcome", "RunResult", "RunSpec", "horizon_sentence", "load_results",
    "memory_horizon", "run_memory", "summarize",
]
