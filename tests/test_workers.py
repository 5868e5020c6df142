"""``--workers N`` and ``$RNNLAB_WORKERS`` limit the threads the engine trains with."""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from rnnlab.cli import main
from rnnlab.engine import population
from rnnlab.engine.population import WORKERS_ENV
from rnnlab.errors import RnnlabError

TINY = ["--cells", "srn,lstm", "--lengths", "3", "--seeds", "1", "--epochs", "1",
        "--task-param", "k_train=1", "--task-param", "k_dev=1", "--task-param", "k_test=1",
        "--quiet"]


def test_the_engine_reads_the_variable(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert population.worker_count() == 8
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert population.worker_count() == 3
    monkeypatch.setenv(WORKERS_ENV, "none")
    with pytest.raises(RnnlabError, match=WORKERS_ENV):
        population.worker_count()


@pytest.fixture
def pools(monkeypatch):
    """The max_workers of every thread pool the engine starts."""
    sizes: list[int] = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, max_workers=None, *args, **kwargs):
            sizes.append(max_workers)
            super().__init__(max_workers, *args, **kwargs)

    monkeypatch.setattr(population.concurrent.futures, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    return sizes


def test_memory_workers_limits_the_engines_threads(tmp_path, pools):
    assert main(["memory", *TINY, "--out", str(tmp_path / "all")]) == 0
    assert pools and max(pools) == 2  # two cells side by side on "8" CPUs
    pools.clear()
    assert main(["memory", *TINY, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert pools and set(pools) == {1}
    assert WORKERS_ENV not in os.environ  # the limit ends with the command


def test_a_ray_task_limits_the_engine_to_its_cpus(monkeypatch):
    """What a Ray task sets (``train_group``) is what the engine reads."""
    from rnnlab.experiments.distributed import train_group

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert train_group("fast", [], cpus=3) == []
    assert population.worker_count() == 3

