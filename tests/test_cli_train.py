"""``rnnlab train / evaluate / predict / cells / tasks`` through ``rnnlab.cli.main``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.io import read_csv

SUMMARY_KEYS = {"task", "task_params", "protocol", "seed", "data_seed", "metric",
                "best_dev_accuracy", "best_step", "test_accuracy", "test_loss", "chance",
                "memoryless_baseline", "steps", "epochs", "seconds", "model_config",
                "train_config", "examples"}
TINY = ["--length", "5", "--hidden", "8", "--embedding", "4", "--epochs", "2", "--quiet"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "digitsum", *TINY, "--cell", "gru", "--seed", "1",
                 "--out", str(out)]) == 0
    return out


def test_train_writes_every_file_with_the_right_keys(trained):
    assert {p.name for p in trained.iterdir()} == {"best.pt", "last.pt", "metrics.csv",
                                                   "config.toml", "summary.json"}
    summary = json.loads((trained / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["model_config"]["cell"] == "gru" and summary["seed"] == 1
    assert summary["task_params"]["length"] == 5
    assert summary["examples"] == {"train": 1000, "dev": 500, "test": 2000}  # default protocol
    assert summary["steps"] == 2 * 32 and summary["chance"] == 0.1
    assert 0 <= summary["test_accuracy"] <= 1
    rows = read_csv(trained / "metrics.csv")
    assert list(rows[0]) == ["step", "epoch", "train_loss", "dev_loss", "dev_accuracy"]
    assert rows[-1]["step"] == "64"
    assert torch.load(trained / "best.pt", weights_only=True)["meta"]["task"] == "digitsum"


def test_json_prints_the_summary(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "digitsum", *TINY, "--max-steps", "3", "--json",
                       "--out", str(tmp_path / "r"))
    assert code == 0
    assert json.loads(out) == json.loads((tmp_path / "r" / "summary.json").read_text())


def test_clip_norm_zero_turns_off_the_protocols_clipping(tmp_path, capsys):
    base = ["train", "digitsum", *TINY, "--max-steps", "2", "--json"]
    code, out, _ = run(capsys, *base, "--out", str(tmp_path / "a"))
    assert code == 0 and json.loads(out)["train_config"]["clip_norm"] == 1.0  # the protocol's
    code, out, _ = run(capsys, *base, "--clip-norm", "0", "--out", str(tmp_path / "b"))
    assert code == 0 and json.loads(out)["train_config"]["clip_norm"] is None


def test_protocol_nndl_sets_the_seed_hyperparameters_and_options_override(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "digitsum", "--protocol", "nndl", "--length", "4",
                       "--max-steps", "5", "--batch-size", "16", "--json",
                       "--out", str(tmp_path / "n"))
    assert code == 0
    summary = json.loads(out)
    train, model = summary["train_config"], summary["model_config"]
    assert (train["epochs"], train["lr"], train["optimizer"]) == (500, 1e-3, "adam")
    assert (train["shuffle"], train["eval_every"], train["clip_norm"]) == (False, 100, None)
    assert train["batch_size"] == 16 and train["max_steps"] == 5  # given explicitly
    assert (model["cell"], model["init"], model["hidden_size"], model["embedding_dim"]) == (
        "srn", "zeros", 32, 32)
    assert summary["examples"] == {"train": 300, "dev": 100, "test": 100}
    assert summary["protocol"] == "nndl" and summary["steps"] == 5


def test_task_params_are_typed(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "digitsum", *TINY, "--max-steps", "2", "--json",
                       "--task-param", "k_test=2", "--task-param", "k-dev=3",
                       "--out", str(tmp_path / "t"))
    assert code == 0
    assert json.loads(out)["examples"] == {"train": 1000, "dev": 300, "test": 200}


def test_train_is_generic_over_tasks(tmp_path, capsys):
    code, out, _ = run(capsys, "train", "adding", "--length", "6", "--task-param", "n_train=32",
                       "--task-param", "n_dev=16", "--task-param", "n_test=16", "--hidden", "4",
                       "--epochs", "1", "--json", "--out", str(tmp_path / "a"))
    summary = json.loads(out)
    assert code == 0 and summary["metric"] == "mse"
    assert {"best_dev_mse", "test_mse"} <= set(summary)
    assert summary["task_params"]["length"] == 6 and summary["examples"]["train"] == 32
    assert summary["model_config"]["head"] == "regress-last"


def test_data_dir_goes_to_the_tasks_data_dir(tmp_path, capsys, mnist_dir):
    code, out, err = run(capsys, "train", "mnist-rows", "--data-dir", str(mnist_dir),
                         "--task-param", "n_train=64", "--task-param", "n_test=32",
                         "--task-param", "dev_size=32", "--hidden", "4", "--max-steps", "2",
                         "--json", "--out", str(tmp_path / "m"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["task_params"]["data_dir"] == str(mnist_dir)
    assert summary["examples"] == {"train": 64, "dev": 32, "test": 32}
    # the folder really is the one read: an empty one is a clear one-line error
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "train", "mnist-rows", "--data-dir", str(tmp_path / "empty"),
                       "--task-param", "n_train=8", "--max-steps", "1", "--quiet",
                       "--out", str(tmp_path / "e"))
    assert code == 2 and "not found in" in err and str(tmp_path / "empty") in err
    assert _one_line_error(err)


@pytest.mark.parametrize("args, message", [
    (["train", "copy", "--data-dir", "somewhere"],
     "--data-dir: task 'copy' reads no data directory"),
    (["train", "adding", "--data-dir", "somewhere"],
     "--data-dir is for digitsum, mnist-rows, permuted-pixel-mnist, pixel-mnist"),
    (["train", "mnist-rows", "--data-dir", "a", "--task-param", "data_dir=b"],
     "--data-dir or --task-param data_dir=..., not both"),
])
def test_data_dir_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err and _one_line_error(err)
    assert not (tmp_path / "o").exists()


def test_resume_continues_a_run(tmp_path, capsys):
    out = str(tmp_path / "r")
    nndl = ["--protocol", "nndl", "--length", "4", "--hidden", "8", "--embedding", "4",
            "--quiet"]
    assert main(["train", "digitsum", *nndl, "--epochs", "1", "--out", out]) == 0
    code, _, err = run(capsys, "train", "digitsum", *nndl, "--epochs", "1", "--out", out)
    assert code == 2 and "already holds a run; pass --resume" in err
    code, printed, _ = run(capsys, "train", "digitsum", "--resume", "--epochs", "2", "--json",
                           "--out", out)
    summary = json.loads(printed)
    assert code == 0 and summary["resumed_from_step"] == 38 and summary["steps"] == 76
    assert summary["protocol"] == "nndl"  # everything else comes from the checkpoint
    assert summary["model_config"]["hidden_size"] == 8
    assert summary["train_config"]["batch_size"] == 8
    straight = str(tmp_path / "straight")
    assert main(["train", "digitsum", *nndl, "--epochs", "2", "--out", straight]) == 0
    resumed = torch.load(Path(out) / "last.pt", weights_only=True)["model"]
    uninterrupted = torch.load(Path(straight) / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    code, _, err = run(capsys, "train", "digitsum", "--resume", "--lr", "0.1", "--out", out)
    assert code == 2 and "cannot resume" in err
    code, _, err = run(capsys, "train", "digitsum", "--resume", "--cell", "gru", "--out", out)
    assert code == 2 and "cannot resume" in err


def test_evaluate_rescores_the_saved_run(trained, capsys):
    code, out, _ = run(capsys, "evaluate", str(trained), "--json")
    assert code == 0
    report = json.loads(out)
    summary = json.loads((trained / "summary.json").read_text())
    assert report["scores"]["test"]["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert report["scores"]["dev"]["accuracy"] == pytest.approx(summary["best_dev_accuracy"])
    code, out, _ = run(capsys, "evaluate", str(trained), "--split", "train")
    assert code == 0 and "train" in out and "accuracy" in out


def test_predict_classifies_sequences(trained, tmp_path, capsys):
    code, out, _ = run(capsys, "predict", str(trained), "--sequence", "3 4 0 0 0",
                       "--sequence", "9 9 0 0 1", "--json")
    assert code == 0
    predictions = json.loads(out)
    assert [p["sequence"] for p in predictions] == [[3, 4, 0, 0, 0], [9, 9, 0, 0, 1]]
    assert all(0 <= p["prediction"] <= 18 for p in predictions)
    data = tmp_path / "seqs.txt"
    data.write_text("3 4 0 0 0\t7\n\n1 1 0\n")
    code, out, _ = run(capsys, "predict", str(trained), "--file", str(data))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].split("\t")[0] == "3 4 0 0 0"
    assert lines[0].split("\t")[1] == str(predictions[0]["prediction"])


def test_cells_and_tasks_are_listed(capsys):
    code, out, _ = run(capsys, "cells")
    assert code == 0 and {line.split()[0] for line in out.splitlines()} == {
        "srn", "residual-srn", "lstm", "gru"}
    code, out, _ = run(capsys, "tasks")
    assert code == 0 and any(line.startswith("digitsum ") for line in out.splitlines())
    # a suite task says the lengths and options the memory experiment gives it
    assert "suite: lengths 5, 10, 20, 40, n_symbols=4" in out


def _one_line_error(err: str) -> bool:
    return "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["train", "nosuch"], "unknown task 'nosuch'; known tasks:"),
    (["train", "digitsum", "--length", "2"], "length must be at least 3"),
    (["train", "digitsum", "--task-param", "k_test"], "expects KEY=VALUE"),
    (["train", "digitsum", "--task-param", "size=3"], "has no parameter 'size'"),
    (["train", "digitsum", "--task-param", "k_test=many"], "expected a whole number"),
    (["train", "digitsum", "--init", "ones"], "'ones' is not one of 'keras', 'normal'"),
    (["evaluate", "/nonexistent/run"], "no run folder at /nonexistent/run"),
    (["predict", "/nonexistent/run", "--sequence", "1 2 3"], "no run folder"),
    (["predict", ".", "--file", "/nonexistent.txt"], "no such file"),
    (["predict", ".", "--sequence", "1 x 3"], "expected whole numbers"),
    (["predict", ".", "--file", "BINARY"], "is not a UTF-8 text file"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    if "BINARY" in args:
        (tmp_path / "binary").write_bytes(b"\xff\xfe1 2 3\n")
        args = [str(tmp_path / "binary") if a == "BINARY" else a for a in args]
    code, out, err = run(capsys, *args, *(["--out", str(tmp_path / "o")]
                                          if args[0] == "train" else []))
    assert code == 2 and message in err and _one_line_error(err)
    assert not (tmp_path / "o" / "summary.json").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "digitsum", "--cell", "rnn"], "'rnn' is not one of"),
    (["train", "digitsum", "--epochs", "0"], "0 is not in the range x>=1"),
    (["train", "digitsum", "--lr", "fast"], "'fast' is not a valid float"),
    (["train", "digitsum", "--lr", "0"], "--lr"),
    (["train", "adding", "--seed", "99999999999999999999999"], "not in the range"),
    (["train", "digitsum", "--data-seed", "-1"], "not in the range"),
    (["recipe", "sine", "--fast", "--seed", "99999999999999999999999"], "not in the range"),
])
def test_bad_options_exit_2_without_traceback(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "best.pt").write_bytes(b"garbage")
    code, _, err = run(capsys, "evaluate", str(tmp_path))
    assert code == 2 and "cannot read checkpoint" in err and _one_line_error(err)


def test_the_console_script(tmp_path):
    script = Path(sys.executable).with_name("rnnlab")
    if not script.exists():
        pytest.skip("the rnnlab console script is not installed beside this python")
    env = {**os.environ, "CI": "true"}
    done = subprocess.run([str(script), "train", "digitsum", "--length", "4", "--hidden", "4",
                           "--max-steps", "3", "--out", str(tmp_path / "s")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and (tmp_path / "s" / "summary.json").exists()
    bad = subprocess.run([str(script), "train", "digitsum", "--length", "1x"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--length" in bad.stderr


def test_unwritable_out_and_negative_seed_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder\n")
    code, _, err = run(capsys, "train", "digitsum", *TINY,
                       "--out", str(tmp_path / "a-file" / "run"))
    assert code == 2 and "cannot create the folder" in err and _one_line_error(err)
    code, _, err = run(capsys, "train", "digitsum", *TINY, "--seed", "-1",
                       "--out", str(tmp_path / "neg"))
    assert code == 2 and "'--seed': -1 is not in the range" in err and _one_line_error(err)
    assert not (tmp_path / "neg" / "summary.json").exists()


def test_resume_without_last_pt_does_not_overwrite_a_finished_run(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "digitsum", *TINY, "--out", str(out)]) == 0
    (out / "last.pt").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(capsys, "train", "digitsum", *TINY, "--resume", "--out", str(out))
    assert code == 2 and "no last.pt to continue from" in err and _one_line_error(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_predict_gives_one_tag_per_step_of_each_sequence(tmp_path, capsys):
    out = tmp_path / "copy"
    assert main(["train", "copy", "--length", "3", "--task-param", "n_symbols=2",
                 "--task-param", "n_train=16", "--task-param", "n_dev=4",
                 "--task-param", "n_test=4", "--hidden", "8", "--embedding", "4",
                 "--max-steps", "1", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    code, printed, _ = run(capsys, "predict", str(out), "--sequence", "1 2 0",
                           "--sequence", "1 2 0 0 9 0 0", "--json")
    rows = json.loads(printed)
    assert code == 0 and [len(r["prediction"]) for r in rows] == [3, 7]
