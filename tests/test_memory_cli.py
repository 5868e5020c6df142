"""``rnnlab memory`` end to end with real training on a tiny grid."""

from __future__ import annotations

import csv
import json

import pytest

from rnnlab.cli import main

TINY = ["--cells", "srn,lstm", "--lengths", "3,6", "--seeds", "2", "--epochs", "2",
        "--task-param", "k_train=1", "--task-param", "k_dev=1", "--task-param", "k_test=1",
        "--eval-every", "5"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_grid_writes_every_file(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["memory", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.strip().splitlines()[-1] == f"Report: {out / 'report.html'}"
    assert "8 runs: 8 trained" in printed.err          # the final progress line
    assert {r["engine"] for r in _rows(out / "results.csv")} == {"fast"}   # the default

    rows = _rows(out / "results.csv")
    assert len(rows) == 8
    from rnnlab.experiments.results import RESULT_FIELDS

    assert tuple(rows[0]) == RESULT_FIELDS
    assert {(r["model"], r["task"], r["epochs"], r["hidden_size"]) for r in rows} == {
        ("srn", "digitsum", "2", "32"), ("lstm", "digitsum", "2", "32")}
    assert {r["path"] for r in rows} <= {"kernel", "torch"}   # the backend that ran
    for row in rows:
        assert 0.0 <= float(row["test_score"]) <= 1.0
        assert 0.0 <= float(row["best_dev_score"]) <= 1.0
        assert int(row["steps"]) == 2 * 4              # 100 examples / batch 32 = 4 steps
        assert float(row["seconds"]) > 0 and len(row["config_hash"]) == 16

    summary = json.loads((out / "summary.json").read_text())
    assert summary["chance"] == pytest.approx(0.1)
    assert summary["threshold"] == 0.9 and summary["runs"]["complete"]
    for cell in ("srn", "lstm"):
        info = summary["cells"][cell]
        assert [p["length"] for p in info["lengths"]] == [3, 6]
        point = info["lengths"][0]
        assert set(point) >= {"mean", "ci_low", "ci_high", "n", "test_accuracies"}
        assert point["n"] == 2
        assert info["horizon_text"]
    assert summary["config"]["resolved"]["epochs"] == 2

    for name in ("report.html", "accuracy_vs_length.png", "curves_srn.png", "curves_lstm.png"):
        assert (out / name).stat().st_size > 1000, name
    run_dirs = sorted((out / "runs").iterdir())
    assert len(run_dirs) == 8
    metrics = _rows(run_dirs[0] / "metrics.csv")
    assert list(metrics[0]) == ["step", "epoch", "train_loss", "dev_loss", "dev_accuracy"]
    assert [int(r["step"]) for r in metrics] == [5, 8]
    assert (run_dirs[0] / "best.pt").is_file()
    # A run folder is an ordinary run: `rnnlab evaluate` rebuilds it and gets its score.
    capsys.readouterr()
    assert main(["evaluate", str(run_dirs[0]), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    row = next(r for r in rows if run_dirs[0].name.endswith(r["config_hash"][:8]))
    assert scores["test"]["accuracy"] == pytest.approx(float(row["test_score"]), abs=1e-6)

    # The same command again trains nothing; one more seed trains only that seed.
    assert main(["memory", *TINY, "--out", str(out)]) == 0
    assert "8 runs: 0 trained" in capsys.readouterr().err
    more = [*TINY]
    more[more.index("--seeds") + 1] = "3"
    assert main(["memory", *more, "--out", str(out)]) == 0
    assert "12 runs: 4 trained" in capsys.readouterr().err
    assert len(_rows(out / "results.csv")) == 12


@pytest.mark.parametrize("option, value, words", [
    ("--lengths", "2,5", "length must be an integer >= 3"),
    ("--cells", "srn,elman", "unknown cell 'elman'"),
    ("--seeds", "0", "--seeds must be a whole number >= 1"),
    ("--threshold", "0", "--threshold must be in (0, 1]"),
    ("--threshold", "1.5", "--threshold must be in (0, 1]"),
    ("--lengths", "5,ten", "comma-separated whole numbers"),
])
def test_bad_grid_is_one_line_and_exit_2_before_training(tmp_path, capsys, option, value,
                                                         words):
    out = tmp_path / "m"
    assert main(["memory", *TINY, option, value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not out.exists()


def test_out_that_cannot_be_created_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    assert main(["memory", *TINY, "--out", str(blocker / "m")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert blocker.read_text() == "not a folder\n"


def test_quiet_prints_nothing_but_errors(tmp_path, capsys):
    args = ["memory", "--tasks", "digitsum,copy", "--cells", "srn", "--lengths", "5",
            "--seeds", "1", "--hidden", "8", "--embedding", "4", "--epochs", "1",
            "--task-param", "k_train=1", "--task-param", "k_dev=1", "--task-param", "k_test=1"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "q")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert main([*args, "--out", str(tmp_path / "loud")]) == 0
    assert "C-kernel engine" in capsys.readouterr().err  # what --quiet kept back
