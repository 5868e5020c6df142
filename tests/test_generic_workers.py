"""Groups of the generic path in worker processes: the same results as one process,
and a worker's failure said in one sentence instead of a hang."""

from __future__ import annotations

import os

import pytest

from rnnlab.errors import RnnlabError
from rnnlab.experiments import MemoryConfig
from rnnlab.experiments.generic_runs import train_groups

MODEL = """
import os

from torch import nn

PARENT = {parent}


class Net(nn.Module):
    def __init__(self, vocab_size, num_outputs, length):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 4)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(4 * length, num_outputs))

    def forward(self, x):
        if os.getpid() != PARENT and {fail!r} == "exit":
            os._exit(3)
        if os.getpid() != PARENT and {fail!r} == "error":
            from rnnlab.errors import RnnlabError
            raise RnnlabError("the model refuses to train in a worker")
        return self.out(self.embed(x))


def build(vocab_size, num_outputs, length):
    return Net(vocab_size, num_outputs, length)
"""


def specs_for(tmp_path, fail: str = "") -> list:
    path = tmp_path / f"model_{fail or 'ok'}.py"
    path.write_text(MODEL.format(parent=os.getpid(), fail=fail))
    config = MemoryConfig(cells=(), models={"mine": f"{path}:build"}, lengths=(4, 6, 8),
                          seeds=2, epochs=2, k_train=1, k_dev=1, k_test=1)
    return config.validate().specs()


def test_workers_give_exactly_the_serial_results(tmp_path):
    specs = specs_for(tmp_path)
    serial = list(train_groups(specs, tmp_path / "one", path="vmap", workers=1))
    parallel = list(train_groups(specs, tmp_path / "two", path="vmap", workers=2))
    assert [r.spec.run_id for r in parallel] == [r.spec.run_id for r in serial]
    assert len(serial) == 6
    for a, b in zip(serial, parallel, strict=True):
        assert (a.best_dev_score, a.test_score, a.steps, a.path) == \
               (b.best_dev_score, b.test_score, b.steps, b.path)
        curve = f"{a.spec.run_id}/metrics.csv"
        assert (tmp_path / "one" / curve).read_text() == (tmp_path / "two" / curve).read_text()
    assert len({r.test_score for r in serial}) > 1  # not all alike


def test_a_worker_error_is_raised_as_itself(tmp_path):
    specs = specs_for(tmp_path, fail="error")
    with pytest.raises(RnnlabError, match="refuses to train in a worker"):
        list(train_groups(specs, tmp_path / "out", path="vmap", workers=2))


def test_a_worker_that_dies_is_one_sentence_not_a_hang(tmp_path):
    specs = specs_for(tmp_path, fail="exit")
    with pytest.raises(RnnlabError, match="worker process ended without a result"):
        list(train_groups(specs, tmp_path / "out", path="vmap", workers=2))


def test_a_decision_given_once_is_what_every_group_takes(tmp_path):
    """``fit_many(decision=...)``: the memory experiment's one timing per model, reused."""
    from rnnlab.engine.generic import fit_many
    from rnnlab.experiments.generic_runs import _jobs

    specs = specs_for(tmp_path)
    _, jobs = _jobs(specs)
    for taken in ("vmap", "loop"):
        _, _, notes = fit_many(jobs, path="auto", decision=(taken, "decided elsewhere"))
        assert len(notes) == 3
        assert all(note.endswith(f"x2: {taken} (decided elsewhere)") for note in notes)
