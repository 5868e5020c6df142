"""The engine never changes a result: ``--engine fast`` against ``--engine loop``.

Every cell, two lengths, two seeds, a few optimiser steps (after thousands of
steps training is chaotic in float32, so compare early): the same run hashes,
the same accuracies, the same curves and the same best parameters to float
tolerance.
"""

from __future__ import annotations

import pytest
import torch

from rnnlab.experiments import MemoryConfig, load_results, run_memory
from rnnlab.io import read_csv

GRID = dict(cells=("srn", "residual-srn", "lstm", "gru"), lengths=(3, 7), seeds=2, epochs=3,
            k_train=1, k_dev=1, k_test=1, eval_every=4)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = {}
    for engine in ("loop", "fast"):
        folder = tmp_path_factory.mktemp(engine)
        run_memory(MemoryConfig(engine=engine, **GRID), folder, progress=False)
        out[engine] = folder
    return out


def test_same_runs_same_accuracies(both):
    loop, fast = (load_results(both[e] / "results.csv") for e in ("loop", "fast"))
    assert set(loop) == set(fast) and len(loop) == 16
    for key, row in loop.items():
        assert fast[key]["engine"] == "fast" and row["engine"] == "loop"
        assert fast[key]["steps"] == row["steps"] == 12
        assert fast[key]["best_dev_score"] == pytest.approx(row["best_dev_score"],
                                                               abs=1e-6), key
        assert fast[key]["test_score"] == pytest.approx(row["test_score"], abs=1e-6), key


def test_same_curves_and_parameters(both):
    for run_dir in sorted((both["loop"] / "runs").iterdir()):
        twin = both["fast"] / "runs" / run_dir.name
        a, b = read_csv(run_dir / "metrics.csv"), read_csv(twin / "metrics.csv")
        assert [r["step"] for r in a] == [r["step"] for r in b]
        for ra, rb in zip(a, b, strict=True):
            assert float(rb["dev_loss"]) == pytest.approx(float(ra["dev_loss"]), abs=1e-4)
        pa = torch.load(run_dir / "best.pt", weights_only=True)["model"]
        pb = torch.load(twin / "best.pt", weights_only=True)["model"]
        for name, value in pa.items():
            torch.testing.assert_close(pb[name], value, atol=1e-4, rtol=1e-4,
                                       msg=f"{run_dir.name}: {name}")
