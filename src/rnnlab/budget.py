"""What a request will cost, estimated before anything is allocated.

A mistyped size (``--hidden 100000``, ``--seeds 1000000000000``) must end in one
line, not in minutes of swapping or an allocator's traceback. These estimates are
upper-bound sketches from the configuration alone (parameters, data, the
activations kept for backpropagation, the optimiser's copies), compared with the
memory this machine has available (``/proc/meminfo``'s ``MemAvailable``, else
``os.sysconf``). They are deliberately rough: their job is to refuse what cannot
possibly fit, not to predict a footprint to the byte.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from rnnlab.errors import RnnlabError

# Copies of the parameters a run holds: the model, its gradient, Adam's two moments,
# the best parameters kept for restore_best, and a checkpoint being serialised.
PARAMETER_COPIES = 6
# Tensors autograd keeps per step, layer and hidden unit (gate pre-activations,
# gate outputs, states), times 4 bytes; 3 per gate and 4 more is generous.
FLOAT = 4
# Per-run bookkeeping outside tensors (spec, job, result objects): measured about
# 2 kB with the fast engine; 4 kB keeps the estimate an upper bound.
RUN_OVERHEAD = 4096
# Multiply-adds beyond which a request earns a warning that it will take long
# (about an hour at the few GFLOP/s a tiny recurrent model reaches on one core).
LONG_WORK = 1e13
# Multiply-adds per second per core of the engine's C kernel on the memory suite, on the
# slow side: 3e10 measured on an AVX2 EPYC (docs/performance.md), halved for older CPUs.
KERNEL_RATE = 1.5e10


def available_memory() -> int:
    """Bytes this machine can still hand out without swapping."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62  # unknown: never refuse on a guess


def human(n: float) -> str:
    """Bytes in words: 1.5 GB, 300.0 TB, 2.4e+35 bytes."""
    if n >= 1e18:
        return f"{float(n):.1e} bytes"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def count(n: int) -> str:
    """A count in words: 3,059 or, past a trillion, 1.0e+20."""
    return f"{n:,}" if n < 10**12 else f"{float(n):.1e}"


def gates(cell: str) -> int:
    """Rows of ``weight_ih`` per hidden unit of a cell (4 when the cell is unknown)."""
    from rnnlab.cells import get_cell

    try:
        return int(get_cell(cell).gates)
    except RnnlabError:
        return 4


def parameters(model: Any) -> int:
    """Parameters of a :class:`~rnnlab.models.ModelConfig` (or a dict of its fields)."""
    get = model.get if isinstance(model, dict) else (lambda k, d=None: getattr(model, k, d))
    hidden, layers = int(get("hidden_size", 32)), int(get("num_layers", 1))
    directions = 2 if get("bidirectional", False) else 1
    g = gates(get("cell", "srn"))
    if get("input", "tokens") == "tokens":
        width = int(get("embedding_dim", 32))
        front = int(get("vocab_size") or 0) * width
    else:
        width, front = int(get("input_size") or 1), 0
    # the first layer reads the input, every later one the layer below (no loop: a
    # mistyped --layers can be astronomically large)
    total = front + directions * g * hidden * (width + hidden + 2)
    total += (layers - 1) * directions * g * hidden * (hidden * directions + hidden + 2)
    outputs = int(get("num_outputs") or 1)
    return total + outputs * (hidden * directions + 1)


def run_bytes(model: Any, examples: int, length: int, batch: int, features: int = 1) -> int:
    """Memory of one run: its parameters and their copies, its data, one batch's activations."""
    get = model.get if isinstance(model, dict) else (lambda k, d=None: getattr(model, k, d))
    hidden, layers = int(get("hidden_size", 32)), int(get("num_layers", 1))
    directions = 2 if get("bidirectional", False) else 1
    width = int(get("embedding_dim", 32)) if get("input", "tokens") == "tokens" else features
    activations = (batch * length * directions * layers * hidden * (3 * gates(get("cell", "srn"))
                   + 4) + batch * length * width) * FLOAT
    data = examples * (length * 8 * max(1, features) + 8)
    return parameters(model) * FLOAT * PARAMETER_COPIES + data + activations


def task_examples(task: Any) -> int:
    """Examples over all splits of a task, from its size fields: ``n_<split>`` or DigitSum's
    ``k_<split>`` (100 digit pairs times ``k`` copies). 0 when the task reads them from files."""
    total = 0
    for split in ("train", "dev", "test"):
        n, k = getattr(task, f"n_{split}", None), getattr(task, f"k_{split}", None)
        if isinstance(n, int):
            total += n
        elif isinstance(k, int):
            total += 100 * k
    return total


def check_fits(what: str, need: int, hint: str) -> None:
    """Refuse (one line) a request whose estimate exceeds the memory available now."""
    have = available_memory()
    if need > have:
        raise RnnlabError(f"{what} would need about {human(need)} of memory, but this machine "
                          f"has {human(have)} available; {hint}")


def warn_if_long(what: str, work: float, hint: str, speedup: float = 1.0) -> None:
    """One line on stderr when ``work`` (multiply-adds) means hours of training;
    ``speedup`` is how many times faster than one plain PyTorch loop it will run (the
    engine's kernel on all cores: :data:`KERNEL_RATE` x cores / the loop's rate)."""
    if work > LONG_WORK * speedup:
        print(f"rnnlab: warning: {what} is about {work:.1e} multiply-adds, which may take "
              f"hours on a CPU; {hint}", file=sys.stderr)


def kernel_speedup(workers: int) -> float:
    """The C kernel on ``workers`` cores against one plain loop, for :func:`warn_if_long`."""
    return KERNEL_RATE * workers / (LONG_WORK / 3600)


def training_work(model: Any, train_examples: int, length: int, epochs: int) -> float:
    """Multiply-adds of training: forward and backward (x3) over every step of every example."""
    return 3.0 * parameters(model) * train_examples * length * epochs
