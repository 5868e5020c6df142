"""``--config FILE.toml``: file values as defaults, the command line winning, written back."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rnnlab.cli import main
from rnnlab.cli.config import config_option, to_toml, write_resolved


@config_option
@click.command("demo")
@click.argument("task_name", metavar="TASK")
@click.option("--cells", default="srn")
@click.option("--lr", type=float, default=0.1)
@click.option("--clip-norm", type=click.FloatRange(min=0))
@click.option("--shuffle/--no-shuffle", default=None)
@click.option("--task-param", multiple=True)
@click.option("--out", type=click.Path(path_type=Path))
@click.pass_context
def demo(ctx, **params):
    click.echo(repr(sorted(params.items())))
    if params["out"] is not None:
        write_resolved(ctx, params["out"])


def _run(*args):
    result = CliRunner().invoke(demo, list(args), standalone_mode=False, catch_exceptions=True)
    return result


def test_file_values_fill_options_and_the_command_line_wins(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('task = "copy"\ncells = ["lstm", "gru"]\nlr = 0.01\nclip_norm = 2.0\n'
                      'shuffle = false\ntask-param = ["k_train=3"]\n')
    out = _run("--config", str(config), "--lr", "0.5").output
    assert "('cells', 'lstm,gru')" in out and "('lr', 0.5)" in out
    assert "('clip_norm', 2.0)" in out and "('shuffle', False)" in out
    assert "('task_name', 'copy')" in out and "('task_param', ('k_train=3',))" in out


def test_values_in_the_file_are_validated_like_options(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("clip-norm = -1.0\n")
    result = _run("--config", str(config), "digitsum")
    assert isinstance(result.exception, click.BadParameter)


@pytest.mark.parametrize("text, message", [
    ("warp = 1\n", "unknown setting 'warp' for rnnlab demo; known:"),
    ("lr = \n", "is not valid TOML"),
    ("lr = {a = 1}\n", "must be a value, not a table"),
])
def test_bad_files_are_one_sentence(tmp_path, text, message):
    config = tmp_path / "c.toml"
    config.write_text(text)
    result = _run("--config", str(config), "digitsum")
    assert message in str(result.exception)


def test_written_back_settings_rerun_the_same(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    first = _run("digitsum", "--cells", "a,b", "--lr", "0.25", "--no-shuffle", "--out", str(out))
    resolved = (out / "config.toml").read_text()
    assert 'cells = "a,b"' in resolved and "lr = 0.25" in resolved
    again = _run("--config", str(out / "config.toml"), "--out", str(out))
    assert again.output == first.output


def test_to_toml_round_trips_through_tomllib():
    import tomllib

    settings = {"a": 1, "b": 0.1, "c": "x\"y\\z", "d": [1, 2], "e": True, "f": None,
                "g": float("inf")}
    back = tomllib.loads(to_toml(settings, comment="two\nlines"))
    assert back == {k: v for k, v in settings.items() if v is not None}


def test_missing_config_file_is_one_line_exit_2(tmp_path, capsys):
    code = main(["train", "digitsum", "--config", str(tmp_path / "none.toml")])
    err = capsys.readouterr().err
    assert code == 2 and "no config file" in err


def test_train_and_memory_take_a_config_and_write_it_back(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[train]\ncell = "gru"\nlength = 5\nhidden = 8\nembedding = 4\n'
                      'epochs = 1\nquiet = true\n'
                      '[memory]\ncells = ["gru"]\nlengths = [5]\nseeds = 1\nhidden = 8\n'
                      'embedding = 4\nepochs = 1\nk-train = 1\nk-dev = 1\nk-test = 1\n')
    out = tmp_path / "t"
    assert main(["train", "digitsum", "--config", str(config), "--epochs", "2",
                 "--out", str(out)]) == 0
    import json

    import tomllib

    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_config"]["cell"] == "gru" and summary["model_config"]["hidden_size"] == 8
    assert summary["epochs"] == 2  # the command line won over the file's 1
    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["cell"] == "gru" and resolved["epochs"] == 2 and resolved["length"] == 5
    mem = tmp_path / "m"
    assert main(["memory", "--config", str(config), "--out", str(mem)]) == 0
    again = tomllib.loads((mem / "config.toml").read_text())
    assert again["cells"] == "gru" and again["lengths"] == "5" and again["seeds"] == 1
    capsys.readouterr()
