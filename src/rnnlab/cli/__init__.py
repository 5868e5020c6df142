"""The ``rnnlab`` command line.

Each family of commands lives in its own module and registers itself on the
group below. User errors (:class:`rnnlab.errors.RnnlabError`, bad options) end
as one line on stderr and exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from rnnlab.errors import RnnlabError

# command -> (module that defines it, one-line summary for `rnnlab --help`). Modules are
# imported only when their command runs, so `rnnlab --help` and `--version` answer without
# importing torch, and a broken optional extra breaks only its own command. A test checks
# each summary against the command's own docstring.
_COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rnnlab.cli.train", "Train one model on TASK; write metrics, checkpoints, summary."),
    "evaluate": ("rnnlab.cli.runs", "Re-score a saved run on its splits."),
    "predict": ("rnnlab.cli.runs", "Predict with a saved run."),
    "cells": ("rnnlab.cli.listing", "List the recurrent cells."),
    "tasks": ("rnnlab.cli.listing", "List the tasks."),
    "memory": ("rnnlab.cli.memory", "The memory-capacity experiment, with its report."),
    "recipe": ("rnnlab.cli.recipe", "Reproduce a seed experiment."),
    "doctor": ("rnnlab.cli.doctor", "Run a training script under diagnosis."),
    "gradients": ("rnnlab.cli.doctor", "Gradients through time: explosion, vanishing, gates."),
    "export": ("rnnlab.cli.export", "Export a run's weights (safetensors) with a model card."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module = _COMMANDS[name][0]
        return getattr(importlib.import_module(module), name.replace("-", "_"))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnnlab")
def cli() -> None:
    """rnnlab: build a recurrent cell, train it on a memory task, measure how far
    back it remembers, and diagnose why it doesn't."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map user errors to exit code 2."""
    try:
        # Outside standalone mode click returns a command's exit code instead of exiting.
        code = cli.main(args=argv, prog_name="rnnlab", standalone_mode=False)
    except RnnlabError as err:
        click.echo(f"rnnlab: error: {err}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("rnnlab: interrupted", err=True)
        return 130
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx is not None else "rnnlab"
        click.echo(f"rnnlab: error: {err.format_message()} (see '{where} --help')", err=True)
        return 2
    except click.ClickException as err:
        click.echo(f"rnnlab: error: {err.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as err:
        return err.exit_code
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
