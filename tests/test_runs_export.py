"""``rnnlab.load_run`` / ``rnnlab export``: a run rebuilt, and its weights in safetensors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rnnlab
from rnnlab.cli import main
from rnnlab.models import ModelConfig, build_model
from rnnlab.train import load_checkpoint
from rnnlab.train.checkpoint import digest

TINY = ["--length", "5", "--hidden", "8", "--embedding", "4", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    assert main(["train", "digitsum", *TINY, "--cell", "lstm", "--seed", "3",
                 "--out", str(out)]) == 0
    return out


def test_load_run_rebuilds_the_model_that_scores_what_the_run_recorded(run_dir):
    run = rnnlab.load_run(run_dir)
    assert run.task_name == "digitsum" and run.task_params["length"] == 5
    assert run.model_config.cell == "lstm" and run.train_config.seed == 3
    summary = json.loads((run_dir / "summary.json").read_text())
    test = run.trainer().evaluate(run.model, run.task.splits(seed=run.data_seed)["test"])
    assert test["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
    assert run.scores()["test_accuracy"] == summary["test_accuracy"]


def test_export_writes_weights_that_load_into_a_fresh_model(run_dir, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), "--format", "safetensors", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    config = json.loads((out / "config.json").read_text())
    model = build_model(ModelConfig(**config["model_config"]))
    model.load_state_dict(load_file(out / "model.safetensors"))
    best = load_checkpoint(run_dir / "best.pt")["model"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best[name]), name
    card = (out / "README.md").read_text()
    assert "digitsum" in card and "test_accuracy" in card and "seeded_model" in card
    assert config["parameters"] == sum(p.numel() for p in model.parameters())


def test_the_model_cards_reproduction_code_runs(run_dir, tmp_path):
    """The card's Python block retrains the run; it must at least build and train."""
    out = tmp_path / "card"
    rnnlab.export_run(run_dir, out)
    card = (out / "README.md").read_text()
    code = card.split("## Reproduce it\n```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rerun = rnnlab.load_run(tmp_path / "runs" / "reproduced")
    original = rnnlab.load_run(run_dir)
    for name, tensor in rerun.model.state_dict().items():
        assert torch.allclose(tensor, original.model.state_dict()[name], atol=1e-6), name


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no run folder"),
    (lambda d: d.mkdir(), "holds no checkpoint"),
    (lambda d: (d.mkdir(), (d / "best.pt").write_bytes(b"garbage")), "cannot read checkpoint"),
])
def test_export_errors_are_one_line_and_exit_2(tmp_path, capsys, setup, message):
    bad = tmp_path / "bad"
    setup(bad)
    code = main(["export", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_unknown_model_config_key_is_named(run_dir, tmp_path, capsys):
    ckpt = load_checkpoint(run_dir / "best.pt")
    ckpt["meta"]["model_config"]["warp_drive"] = 1
    ckpt["digest"] = digest(ckpt)  # as a newer rnnlab would have written it
    bad = tmp_path / "future"
    bad.mkdir()
    torch.save(ckpt, bad / "best.pt")
    code = main(["export", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "warp_drive" in err and len(err.strip().splitlines()) == 1


def test_version_and_help_do_not_import_torch():
    probe = ("import sys; from rnnlab.cli import main; "
             "code = main(['--version']); main(['--help']); "
             "assert 'torch' not in sys.modules, 'torch was imported'; print(code)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "rnnlab, version" in done.stdout


def test_help_summaries_match_the_commands():
    """`rnnlab --help` lists summaries kept beside the lazy registry: every listed name
    must still be a command of that name in the module the registry names."""
    import importlib

    import click

    from rnnlab.cli import _COMMANDS, cli

    for name, (module, summary) in _COMMANDS.items():
        command = getattr(importlib.import_module(module), name.replace("-", "_"))
        assert isinstance(command, click.Command) and command.name == name
        assert cli.get_command(click.Context(cli), name) is command
        assert summary and len(summary) <= 80, name


def test_every_public_name_resolves():
    for name in rnnlab.__all__:
        assert getattr(rnnlab, name) is not None, name
    with pytest.raises(AttributeError):
        _ = rnnlab.no_such_name
