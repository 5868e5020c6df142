"""Runs of the generic path keep best.pt and last.pt that ``rnnlab evaluate`` and
``rnnlab.load_run`` read, rebuilding a user's model from its file (refused once the file
changes); ``--cells none`` trains only the user's ``--model``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.errors import RnnlabError
from rnnlab.experiments import MemoryConfig
from rnnlab.experiments.generic_runs import train_groups
from rnnlab.runs import load_run
from user_sources import LEAKY_CELL

CELL = LEAKY_CELL

MODEL = """
from torch import nn


class Net(nn.Module):
    def __init__(self, vocab_size, num_outputs, hidden_size):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 8)
        self.lstm = nn.LSTM(8, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, x):
        _, (h, _) = self.lstm(self.embed(x))
        return self.out(h[-1])


def build(vocab_size, num_outputs, hidden_size=16):
    return Net(vocab_size, num_outputs, hidden_size)
"""

TINY = ["--seeds", "2", "--epochs", "2", "--task-param", "k_train=1", "--task-param",
        "k_dev=1", "--task-param", "k_test=1", "--eval-every", "5", "--hidden", "8",
        "--embedding", "8", "--lengths", "3"]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "cells.py").write_text(CELL)
    (tmp_path / "models.py").write_text(MODEL)
    return tmp_path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run_dir(out: Path, row: dict[str, str]) -> Path:
    """The run folder of a DigitSum row (``RunSpec.run_id``)."""
    return out / "runs" / f"{row['model']}-L{row['length']}-s{row['seed']}-{row['config_hash'][:8]}"


def _evaluate(run_dir: Path, capsys) -> float:
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["scores"]["test"]["accuracy"]


def test_evaluate_scores_a_user_cell_and_model_run_as_results_csv(files, capsys):
    out = files / "m"
    args = ["memory", "--cells", f"{files / 'cells.py'}:LeakyCell", "--model",
            f"mine={files / 'models.py'}:build", *TINY, "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = _rows(out / "results.csv")
    assert {r["model"] for r in rows} == {"LeakyCell", "mine"} and len(rows) == 4
    for row in rows:
        run_dir = _run_dir(out, row)
        assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").is_file()
        assert _evaluate(run_dir, capsys) == pytest.approx(float(row["test_score"]),
                                                           abs=1e-6)
    mine = next(_run_dir(out, r) for r in rows if r["model"] == "mine")
    (files / "models.py").write_text(MODEL.replace("hidden_size=16", "hidden_size=17"))
    assert main(["evaluate", str(mine)]) == 2
    assert "has changed since the run trained" in capsys.readouterr().err
    (files / "models.py").unlink()
    with pytest.raises(RnnlabError, match="model file .* is missing"):
        load_run(mine)


@pytest.mark.parametrize("path", ["vmap", "loop"])
def test_both_paths_write_checkpoints_load_run_scores_alike(files, tmp_path, path):
    config = MemoryConfig(cells=(), models={"mine": f"{files / 'models.py'}:build"},
                          lengths=(4,), seeds=2, epochs=2, k_train=1, k_dev=1, k_test=1,
                          eval_every=5, hidden_size=8)
    results = list(train_groups(config.validate().specs(), tmp_path / path, path=path))
    assert {r.path for r in results} == {path}
    for result in results:
        run = load_run(tmp_path / path / result.spec.run_id)
        test = run.trainer().evaluate(run.model, run.task.splits(run.data_seed)["test"])
        assert test["accuracy"] == pytest.approx(result.test_score, abs=1e-6)
        last = load_run(tmp_path / path / result.spec.run_id, "last")
        assert last.checkpoint["step"] == result.steps
        assert run.checkpoint["best_step"] <= result.steps


def test_cells_none_trains_only_the_users_model(files, capsys):
    out = files / "only"
    args = ["memory", "--cells", "none", "--model", f"mine={files / 'models.py'}:build",
            *TINY, "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert {r["model"] for r in _rows(out / "results.csv")} == {"mine"}
    assert main(["memory", "--cells", "", *TINY, "--out", str(files / "none")]) == 2
    err = capsys.readouterr().err
    assert "leaves nothing to train" in err and len(err.strip().splitlines()) == 1


def test_checkpoints_at_end_are_the_trainers_own(tmp_path):
    """The loop path writes best.pt and last.pt once, at the end: the same contents as the
    trainer's files written evaluation by evaluation (time spent aside)."""
    import torch

    from rnnlab.engine.generic_checkpoint import CheckpointsAtEnd
    from rnnlab.tasks import get_task
    from rnnlab.train import TrainConfig, Trainer
    from rnnlab.train.checkpoint import digest, load_checkpoint

    splits = get_task("digitsum", length=5, k_train=1, k_dev=1, k_test=1).splits(0)
    # dev accuracy peaks before the end here, so best.pt and last.pt differ
    config = TrainConfig(epochs=15, batch_size=16, eval_every=3, lr=0.3, progress="off")

    def fit(**kwargs) -> None:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(),
                                    torch.nn.Linear(20, 19))
        Trainer(config, kwargs.pop("callbacks", None)).fit(
            model, splits["train"], splits["dev"], meta={"m": 1}, **kwargs)

    fit(out_dir=tmp_path / "trainer")
    fit(callbacks=[CheckpointsAtEnd(tmp_path / "end")])
    steps = []
    for name in ("best.pt", "last.pt"):
        a = load_checkpoint(tmp_path / "trainer" / name)
        b = load_checkpoint(tmp_path / "end" / name)
        assert a["step"] > 0 and set(a) == set(b)
        steps.append(a["step"])
        for key in set(a) - {"digest", "seconds"}:
            left, right = a[key], b[key]
            if key == "history":
                left, right = ([{k: v for k, v in r.items() if "second" not in k} for r in x]
                               for x in (left, right))
            assert digest({"v": left}) == digest({"v": right}), (name, key)
    assert steps[0] < steps[1]  # the best came before the end
