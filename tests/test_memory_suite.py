"""``rnnlab memory`` as the memory lab: several tasks, your own cell and model, grids."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from rnnlab.cli import main
from rnnlab.experiments import MemoryConfig, RunResult, run_memory
from rnnlab.experiments.results import horizon_range, uncertainty_words
from rnnlab.tasks import register_task, unregister_task
from user_sources import LEAKY_CELL
from user_tasks import FirstBit

CELL = LEAKY_CELL

MODEL = """
from torch import nn


class Net(nn.Module):
    def __init__(self, vocab_size, num_outputs, head, hidden_size):
        super().__init__()
        self.head = head
        self.embed = nn.Embedding(vocab_size, 8)
        self.gru = nn.GRU(8, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, x):
        outputs, h = self.gru(self.embed(x))
        return self.out(outputs if self.head == "tag" else h[-1])


def build(vocab_size, num_outputs, head, hidden_size=16):
    return Net(vocab_size, num_outputs, head, hidden_size)


def raises(vocab_size):
    raise ValueError("no such layer")


def not_a_module(vocab_size):
    return 42


def wrong_shape(vocab_size, num_outputs):
    return nn.Embedding(vocab_size, num_outputs)
"""

TINY = ["--seeds", "2", "--epochs", "2", "--task-param", "k_train=1", "--task-param", "k_dev=1",
        "--task-param", "k_test=1",
        "--eval-every", "5", "--hidden", "8", "--embedding", "8"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "cells.py").write_text(CELL)
    (tmp_path / "models.py").write_text(MODEL)
    return tmp_path


def test_user_cell_and_model_on_two_tasks_end_to_end(files, capsys):
    out = files / "m"
    args = ["memory", "--cells", f"srn,{files / 'cells.py'}:LeakyCell",
            "--model", f"mine={files / 'models.py'}:build", "--tasks", "digitsum,copy",
            "--lengths", "3,6", *TINY, "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    rows = _rows(out / "results.csv")
    assert len(rows) == 3 * 2 * 2 * 2                   # models x tasks x lengths x seeds
    assert [(r["model"], r["task"]) for r in rows[::4]] == [
        ("srn", "digitsum"), ("srn", "copy"), ("LeakyCell", "digitsum"),
        ("LeakyCell", "copy"), ("mine", "digitsum"), ("mine", "copy")]
    for r in rows:
        assert r["status"] == "ok" and 0.0 <= float(r["test_score"]) <= 1.0
        assert int(r["params"]) > 0 and r["hidden_size"] == "8"
    # The engine trains built-in cells on every task; users' models take the generic path.
    paths = {(r["model"], r["task"]): (r["engine"], r["path"]) for r in rows}
    assert paths["srn", "digitsum"][0] == paths["srn", "copy"][0] == "fast"
    assert paths["LeakyCell", "copy"][0] == paths["mine", "digitsum"][0] == "generic"
    assert {paths[k][1] for k in paths if paths[k][0] == "generic"} <= {"vmap", "loop"}
    assert "generic path, mine on copy 6:" in printed.err
    # One plain line per finished run (stderr is not a terminal here).
    assert printed.err.count(" seed ") >= len(rows)
    # A user's model file's hash is in its rows.
    assert {r["model_source"] for r in rows if r["model"] == "mine"} != {""}

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"digitsum", "copy"}
    assert summary["tasks"]["copy"]["chance"] == pytest.approx(1 / 8)
    assert set(summary["tasks"]["copy"]["memoryless"]) == {"3", "6"}
    assert summary["provenance"]["torch"] == torch.__version__
    for name in ("report.html", "horizons.png", "horizons.svg", "score_copy.png",
                 "score_digitsum.svg", "curves_mine_copy.png", "curves_srn_digitsum.png"):
        assert (out / name).stat().st_size > 1000, name
    html = (out / "report.html").read_text()
    assert "horizon-table" in html and "state size" in html and "torch " in html
    # The configuration text says what was run, not the protocol's 100 epochs.
    assert "epochs 2 (the protocol says 100)" in html and "hidden_size 8" in html
    assert printed.out.strip().splitlines()[-1] == f"Report: {out / 'report.html'}"

    # The same command trains nothing again.
    assert main(args) == 0
    assert "24 runs: 0 trained" in capsys.readouterr().err


@pytest.mark.parametrize("function, words", [
    ("raises", "raises(vocab_size=10) raised ValueError: no such layer"),
    ("not_a_module", "returned a int, not a torch.nn.Module"),
    ("wrong_shape", "but head 'classify' needs (2, 19)"),
    ("missing", "has no 'missing'"),
])
def test_factory_mistakes_are_one_line_and_exit_2_before_training(files, capsys, function,
                                                                   words):
    out = files / "m"
    code = main(["memory", "--cells", "srn", "--model", f"bad={files / 'models.py'}:{function}",
                 "--lengths", "3", *TINY, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "models.py" in err and "\n" not in err
    assert not (out / "results.csv").exists()


def _hashes(config: MemoryConfig) -> set[str]:
    return {s.config_hash for s in config.specs()}


def test_hash_changes_with_the_model_file_and_only_then(files, tmp_path):
    def config(path: Path) -> MemoryConfig:
        return MemoryConfig(cells=(f"{path}:LeakyCell",),
                            models={"mine": f"{path.parent / 'models.py'}:build"},
                            lengths=(3,), seeds=1)

    before = _hashes(config(files / "cells.py"))
    assert before == _hashes(config(files / "cells.py"))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(files / "cells.py", moved / "cells.py")
    shutil.copy(files / "models.py", moved / "models.py")
    assert _hashes(config(moved / "cells.py")) == before     # same content, other folder
    (moved / "cells.py").write_text(CELL + "\n# tuned\n")
    after = _hashes(config(moved / "cells.py"))
    assert len(after & before) == 1                        # the cell's run changed, not mine


def test_digitsum_hashes_are_those_of_before_the_suite():
    """The hashes of main before the suite (an experiment's old rows stay valid)."""
    assert [s.config_hash for s in MemoryConfig().specs()[:2]] == ["7ffa382acd770fe7",
                                                                   "ef3c83a7c2c13003"]
    nndl = MemoryConfig(protocol="nndl", cells=("gru",), lengths=(20,))
    assert nndl.specs()[0].config_hash == "d5592710f44fbfbc"


def test_task_options_reach_the_task_and_the_hash():
    """A task's memory_options (copy: 4 symbols) make its runs' task and their hash."""
    from rnnlab.experiments.models import task_for

    (spec,) = MemoryConfig(cells=("lstm",), tasks=("copy",), lengths=(5,), seeds=1).specs()
    assert dict(spec.task_options) == {"n_symbols": 4}
    assert task_for(spec).n_symbols == 4 and task_for(spec).length == 5
    classic = dataclasses.replace(spec, task_options=(("n_symbols", 10),))
    assert task_for(classic).n_symbols == 10
    assert classic.config_hash != spec.config_hash
    assert spec.asdict()["task_options"] == {"n_symbols": 4}


def test_best_dev_setting_is_reported_never_best_test(tmp_path):
    # lr 0.01 has the better dev score, lr 0.1 the better test score: dev must win.
    scores = {0.01: (0.9, 0.5), 0.1: (0.6, 0.95)}

    def runner(specs, runs_dir):
        for spec in specs:
            dev, test = scores[spec.lr]
            yield RunResult(spec, dev, test - 0.01 * spec.seed, 5, 0.0, "fake")

    config = MemoryConfig(cells=("lstm",), lengths=(5,), seeds=2, lr=(0.01, 0.1))
    outcome = run_memory(config, tmp_path, runner=runner, progress=False)
    point = outcome.summary["tasks"]["digitsum"]["models"]["lstm"]["lengths"][0]
    assert point["chosen"]["lr"] == 0.01
    assert point["mean"] == pytest.approx(0.495)
    assert {t["lr"]: t["dev_mean"] for t in point["chosen"]["tried"]} == {0.01: 0.9, 0.1: 0.6}
    assert len(_rows(tmp_path / "results.csv")) == 4
    assert "Chosen hyper-parameters" in outcome.report.read_text()


def test_horizon_uncertainty_in_words():
    points = [{"length": 5, "mean": 0.99, "ci_low": 0.97, "ci_high": 1.0},
              {"length": 10, "mean": 0.85, "ci_low": 0.7, "ci_high": 0.95},
              {"length": 20, "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4}]
    low, high = horizon_range(points, 0.9)
    assert (low, high) == (5, 10)
    assert uncertainty_words(5, low, high) == "10 steps is within the 95% interval"
    assert uncertainty_words(5, 5, 5) == ""


@register_task  # the decorator form, as a user's module would register it
@dataclass
class SuiteFirstBit(FirstBit):
    name: ClassVar[str] = "suite-first-bit"
    memory_lengths: ClassVar[tuple[int, ...]] = (2, 4)


unregister_task("suite-first-bit")


def test_a_registered_task_runs_like_a_built_in(tmp_path):
    register_task(SuiteFirstBit)
    try:
        config = MemoryConfig(cells=("gru",), tasks=("suite-first-bit",), seeds=1, epochs=1,
                              k_train=1, k_dev=1, k_test=1, hidden_size=4, embedding_dim=4)
        outcome = run_memory(config, tmp_path, progress=False)
    finally:
        unregister_task("suite-first-bit")
    rows = _rows(tmp_path / "results.csv")
    assert [(r["task"], int(r["length"])) for r in rows] == [("suite-first-bit", 2),
                                                             ("suite-first-bit", 4)]
    info = outcome.summary["tasks"]["suite-first-bit"]
    assert info["chance"] == 0.5 and info["axis_label"] == "bits after the first"
    # built-in cells train on the engine whatever the task, a user's task included
    assert all(r["engine"] == "fast" for r in rows)


def test_match_params_scales_each_model_near_the_target():
    from rnnlab.experiments.models import check_models

    config = MemoryConfig(cells=("srn", "lstm"), lengths=(5,), seeds=1, match_params=6000)
    specs = config.specs()
    hidden = {s.cell: s.hidden_size for s in specs}
    assert hidden["srn"] > hidden["lstm"]                 # the LSTM has 4 gates per unit
    sizes = check_models(specs)
    for s in specs:
        params = sizes[s.cell, s.task, s.hidden_size]["params"]
        assert abs(params - 6000) < 0.1 * 6000, (s.cell, params)


def test_generic_vmap_and_loop_paths_give_the_same_rows(files, tmp_path):
    """The suite's generic runner: vmap (all seeds and both learning rates in one group)
    and the trainer one run at a time end at the same scores."""
    from rnnlab.experiments.runners import generic_runner

    config = MemoryConfig(cells=(), models={"mine": f"{files / 'models.py'}:build"},
                          tasks=("copy",), lengths=(4,), seeds=2, epochs=2, k_train=1,
                          k_dev=1, k_test=1, eval_every=2, lr=(5e-3, 2e-2))
    specs = config.validate().specs()
    vmap = {r.spec.config_hash: r for r in generic_runner(specs, tmp_path / "a", path="vmap")}
    loop = {r.spec.config_hash: r for r in generic_runner(specs, tmp_path / "b", path="loop")}
    assert set(vmap) == set(loop) and len(vmap) == 4
    assert {r.path for r in vmap.values()} == {"vmap"}
    assert {r.path for r in loop.values()} == {"loop"}
    for key, r in vmap.items():
        assert r.best_dev_score == pytest.approx(loop[key].best_dev_score, abs=1e-5)
        assert r.test_score == pytest.approx(loop[key].test_score, abs=1e-5)
    assert len({round(r.test_score, 6) for r in vmap.values()}) > 1   # not all alike
