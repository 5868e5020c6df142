"""One vocabulary across commands: every command's options walked, so names can't drift."""

from __future__ import annotations

import re

import click
import pytest

from rnnlab.cli import _COMMANDS, cli, main
from rnnlab.cli.vocab import VocabCommand

# Commands that write result files print a summary: they take --json and --quiet.
WRITERS = {"train", "memory", "doctor", "export", "gradients explosion", "gradients vanishing",
           "gradients gates"}
# Old spellings that must never be visible options again (hidden aliases only).
RETIRED = {"--clip", "--k-train", "--k-dev", "--k-test"}
FAMILIES = {click.INT: "int", click.FLOAT: "float", click.STRING: "text", click.BOOL: "bool"}


def _leaves():
    ctx = click.Context(cli)
    for name in sorted(_COMMANDS):
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                yield f"{name} {sub}", command.get_command(ctx, sub)
        else:
            yield name, command


LEAVES = dict(_leaves())


def _visible(command):
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def _longs(command):
    return {opt: p for p in _visible(command) for opt in p.opts + p.secondary_opts
            if opt.startswith("--")}


def _family(param):
    kind = param.type
    if isinstance(kind, click.IntRange):
        return "int"
    if isinstance(kind, click.FloatRange):
        return "float"
    if isinstance(kind, click.Path):
        return "path"
    if isinstance(kind, click.Choice):
        return "choice"
    return "flag" if param.is_flag else FAMILIES.get(kind, type(kind).__name__)


def test_every_command_is_walked():
    assert {"train", "memory", "evaluate", "predict", "recipe list", "recipe digitsum",
            "gradients explosion", "doctor", "export", "cells", "tasks"} <= set(LEAVES)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_results_can_be_had_as_json_and_writers_can_be_quiet(name):
    longs = _longs(LEAVES[name])
    assert "--json" in longs, f"rnnlab {name} prints results but has no --json"
    if name in WRITERS or name.startswith("recipe ") and name != "recipe list":
        assert "--quiet" in longs, f"rnnlab {name} writes results but has no --quiet"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_retired_spellings_are_hidden_and_clipping_says_which_norm(name):
    longs = _longs(LEAVES[name])
    assert not RETIRED & set(longs), f"rnnlab {name} shows {RETIRED & set(longs)}"
    if not name.startswith("recipe "):
        assert "--set" not in longs  # --set is a recipe's own setting, nowhere else
    for opt, param in longs.items():
        if "clip" in opt:
            assert opt in ("--clip-norm", "--clip-per-param"), f"rnnlab {name} {opt}"
            meaning = "global gradient norm" if opt == "--clip-norm" else "each parameter"
            assert meaning in param.help, f"rnnlab {name} {opt} does not say it clips {meaning}"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_defaults_are_shown_one_way(name):
    for param in _visible(LEAVES[name]):
        assert not re.search(r"\[[^\]]*\]\.?\s*$", param.help or ""), \
            f"rnnlab {name} {param.opts[0]}: a default in brackets in the help text"
        assert "default:" not in (param.help or "").lower(), f"rnnlab {name} {param.opts[0]}"
        unset = (None, getattr(click.core, "UNSET", None))  # click >= 8.2 marks "no default"
        if param.default not in unset and not param.is_flag and not param.multiple:
            assert param.show_default, f"rnnlab {name} {param.opts[0]} hides its default"


def test_one_name_means_one_kind_of_value_everywhere():
    seen: dict[str, tuple[str, str]] = {}
    for name, command in LEAVES.items():
        for opt, param in _longs(command).items():
            if opt in ("--help",):
                continue
            family = _family(param)
            first = seen.setdefault(opt, (family, name))
            assert first[0] == family, (f"{opt} takes a {family} in rnnlab {name} but a "
                                        f"{first[0]} in rnnlab {first[1]}")


@pytest.mark.parametrize("name", sorted(n for n, c in LEAVES.items()
                                        if isinstance(c, VocabCommand)))
def test_each_old_spelling_leads_to_a_visible_option(name):
    command = LEAVES[name]
    assert command.renamed
    longs = _longs(command)
    for old, (new, _) in command.renamed.items():
        assert old not in longs and new in longs, (name, old, new)


def _params(command, args):
    return command.make_context(command.name, list(args)).params


def test_old_spellings_parse_as_the_new_ones(capsys):
    memory = LEAVES["memory"]
    assert _params(memory, ["--clip", "2"]) == _params(memory, ["--clip-norm", "2"])
    assert "--clip is now --clip-norm" in capsys.readouterr().err
    old = _params(memory, ["--k-test", "3", "--k-train=2", "--task-param", "k_dev=1"])
    assert old["task_param"] == ("k_test=3", "k_train=2", "k_dev=1")
    explosion = LEAVES["gradients explosion"]
    assert _params(explosion, ["--clip", "3"])["clip"] == 3.0
    assert _params(explosion, ["--clip-per-param", "3"])["clip"] == 3.0


def test_an_unknown_task_param_of_the_experiment_is_one_line(capsys):
    assert main(["memory", "--task-param", "width=3", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert "--task-param width" in err and "k_test" in err and len(err.splitlines()) == 1


def test_listings_as_json(capsys):
    import json

    assert main(["cells", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert "lstm" in cells and cells["lstm"]
    assert main(["tasks", "--json"]) == 0
    assert "digitsum" in json.loads(capsys.readouterr().out)
    assert main(["recipe", "list", "--json"]) == 0
    assert "digitsum" in json.loads(capsys.readouterr().out)


def test_config_files_take_the_new_names_and_the_old(tmp_path):
    from rnnlab.cli.config import load_config

    memory = LEAVES["memory"]
    ctx = click.Context(memory)
    path = tmp_path / "c.toml"
    path.write_text('clip-norm = 2.0\nk-test = 3\ntask-param = ["k_dev=1"]\nworkers = 2\n')
    assert load_config(ctx, path) == {"clip": 2.0, "task_param": ["k_test=3", "k_dev=1"],
                                      "workers": 2}
    path.write_text("clip = 2.0\n")
    assert load_config(ctx, path) == {"clip": 2.0}
    gates = click.Context(LEAVES["gradients gates"])
    path.write_text("sequence = 4\n")  # old spelling of --example
    assert load_config(gates, path) == {"sequence": 4}


def test_the_documented_difference_between_get_task_and_the_cli_default_holds():
    from rnnlab.protocols import get_protocol
    from rnnlab.tasks import get_task, task_class
    from rnnlab.train import TrainConfig

    help_text = " ".join(LEAVES["train"].help.split())
    alone = get_task("digitsum", length=5)
    cli = get_task("digitsum", length=5,
                   **get_protocol("default").task_overrides(task_class("digitsum")))
    sizes = [100 * t.k_train for t in (alone, cli)]  # 100 digit pairs, k copies each
    assert (sizes, alone.k_dev, alone.k_test) == ([300, 1000], 1, 1)
    assert (cli.k_dev, cli.k_test) == (5, 20)
    assert "DigitSum 300/100/100 examples" in help_text and "1,000/500/2,000" in help_text
    config = TrainConfig()
    assert (config.lr, config.clip_norm) == (1e-3, None) and "Adam 1e-3, no clipping" in \
        help_text
    assert get_protocol("default").train["lr"] == 5e-3
