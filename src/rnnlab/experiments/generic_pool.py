"""Groups of the generic path trained side by side in worker processes.

A memory experiment's groups (one per model, task and length) never share anything,
and one group is too small to keep more than one core busy (its steps are many tiny
tensor operations, so torch's threads do not help it), so groups go to separate
processes, one thread each. Each group's result depends on its specs alone, so it is
the same whichever process trains it (``tests/test_generic_workers.py``).

Processes are forked where the system can (they start in milliseconds and inherit the
loaded user models); elsewhere spawned. A worker writes only its own runs' folders; the
caller gets the results in group order and alone appends rows to ``results.csv``. A
worker's exception is raised here as itself (a :class:`~rnnlab.errors.RnnlabError`
stays one line); a worker that dies without one (killed, out of memory) raises one
sentence instead of hanging. Ctrl-C stops the workers with the experiment.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rnnlab.errors import RnnlabError


def _start_worker() -> None:
    """One thread per worker; Ctrl-C is the parent's to handle (it stops the workers)."""
    import os

    import torch

    from rnnlab.engine.population import WORKERS_ENV

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ[WORKERS_ENV] = "1"
    torch.set_num_threads(1)


def in_processes(fn: Callable[..., Any], tasks: Sequence[tuple], workers: int) -> Iterator[Any]:
    """``fn(*task)`` for every task in up to ``workers`` processes; values in task order."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(max(1, min(workers, len(tasks))), mp_context=context,
                               initializer=_start_worker)
    futures: list[Future] = []
    finished = False
    try:
        futures = [pool.submit(fn, *task) for task in tasks]
        for future in futures:
            try:
                value = future.result()
            except BrokenProcessPool:
                raise RnnlabError(
                    "a worker process ended without a result (killed, or out of memory?); "
                    "rerun with --workers 1 to train the groups one after another "
                    "in this process") from None
            yield value
        finished = True
    finally:
        if not finished:  # an error, Ctrl-C or a consumer that stopped early
            for future in futures:
                future.cancel()
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
