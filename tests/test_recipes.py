"""Every recipe end to end in fast mode: its files, and a model that beats no memory."""

import json

import pytest

from rnnlab.cli import main
from rnnlab.errors import RnnlabError
from rnnlab.recipes import describe, recipe_names, run_recipe

PNG = b"\x89PNG\r\n\x1a\n"


def _check_outputs(result, out):
    names = {p.name for p in out.iterdir()}
    assert {"README.md", "summary.json", "metrics.csv"} <= names
    assert set(result.files) <= names
    plots = [p for p in out.iterdir() if p.suffix == ".png"]
    assert plots and all(p.read_bytes().startswith(PNG) for p in plots)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == result.name and summary["fast"] is True
    assert "seed" in summary["settings"]
    assert (out / "metrics.csv").read_text().count("\n") >= 2
    readme = (out / "README.md").read_text()
    assert readme.startswith("# Recipe") and "What it means" in readme
    assert result.beats_baseline, (result.score, result.baseline)


def test_burst_carried_state_is_memoryless_and_the_fix_is_not(tmp_path):
    result = run_recipe("burst", tmp_path, fast=True)
    _check_outputs(result, tmp_path)
    numbers = result.numbers
    carried = numbers["srn, state carried (seed)"]["test_accuracy"]
    fixed = numbers["lstm, fresh state (fix)"]["test_accuracy"]
    assert fixed > 0.95 and fixed > carried + 0.1
    assert (tmp_path / "per_step_error.csv").exists()


def test_sine_rollout(tmp_path):
    result = run_recipe("sine", tmp_path, fast=True)
    _check_outputs(result, tmp_path)
    assert result.metric == "mse"
    # priming tells the model which way the wave goes; it must stay near the truth
    assert result.numbers["rollout_mse_prime10"] < 0.25


def test_sin_cos_needs_its_carried_state(tmp_path):
    result = run_recipe("sin-cos", tmp_path, fast=True)
    _check_outputs(result, tmp_path)
    assert result.numbers["eval_mse_state_carried"] < result.numbers["eval_mse_fresh_state"]


def test_mnist_rows(tmp_path, mnist_dir):
    result = run_recipe("mnist-rows", tmp_path, fast=True, data_dir=str(mnist_dir))
    _check_outputs(result, tmp_path)
    assert result.numbers["test_examples"] == 500
    assert result.score > 0.3


def test_binary_pairs_fixed_beats_broken_axes(tmp_path):
    result = run_recipe("binary-pairs", tmp_path, fast=True)
    _check_outputs(result, tmp_path)
    assert result.numbers["fixed_accuracy"] > 0.9
    assert result.numbers["broken_accuracy"] < 0.6
    assert set(result.numbers["probe"]) == {"0 0", "0 1", "1 0", "1 1"}


def test_digitsum(tmp_path):
    result = run_recipe("digitsum", tmp_path, fast=True)
    _check_outputs(result, tmp_path)
    assert set(result.numbers) == {"srn", "residual-srn"}


def test_text_bilstm_beats_any_bag_of_words(tmp_path):
    result = run_recipe("text-bilstm", tmp_path, fast=True)
    _check_outputs(result, tmp_path)
    assert result.score > result.numbers["bag_of_words_ceiling"] + 0.1
    assert result.numbers["per_kind"]["x-not-y"]["bag_of_words"] < 0.65
    assert (tmp_path / "run" / "best.pt").is_file()


def test_every_recipe_is_tested_and_described():
    assert set(recipe_names()) == {"burst", "sine", "sin-cos", "mnist-rows", "binary-pairs",
                                   "digitsum", "text-bilstm"}
    for name in recipe_names():
        info = describe(name)
        assert info["summary"] and info["seed_report"] and "seed" in info["settings"]


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(RnnlabError, match="unknown recipe setting"):
        run_recipe("burst", tmp_path, fast=True, hidden=3)
    with pytest.raises(RnnlabError, match="iterations must be positive"):
        run_recipe("burst", tmp_path, fast=True, iterations=0)
    with pytest.raises(RnnlabError, match="unknown recipe 'nope'"):
        run_recipe("nope", tmp_path)
    with pytest.raises(RnnlabError, match="train-images-idx3-ubyte.*not found"):
        run_recipe("mnist-rows", tmp_path / "out", fast=True, data_dir=str(tmp_path / "none"))


def test_cli(tmp_path, capsys):
    assert main(["recipe", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in recipe_names())
    out = tmp_path / "sc"
    assert main(["recipe", "sin-cos", "--fast", "--out", str(out), "--seed", "3",
                 "--set", "chunks=20"]) == 0
    printed = capsys.readouterr().out
    assert "sin-cos, srn, state carried: test mse" in printed and "README.md" in printed
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["seed"] == 3 and settings["chunks"] == 20
    assert main(["recipe", "nope"]) == 2
    assert "known recipes" in capsys.readouterr().err
    assert main(["recipe", "burst", "--set", "iterations=many"]) == 2
    assert "expected a whole number" in capsys.readouterr().err
    assert main(["recipe", "sin-cos", "--data-dir", str(tmp_path)]) == 2
    capsys.readouterr()
    (tmp_path / "a-file").write_text("not a folder\n")
    assert main(["recipe", "burst", "--fast", "--out", str(tmp_path / "a-file" / "b")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and "Traceback" not in err
