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

# module name -> commands it defines; imported only when one of them is called,
# so `rnnlab --help` stays fast and a broken optional extra breaks only its command.
_COMMANDS: dict[str, tuple[str, ...]] = {
    "rnnlab.cli.train": ("train", "evaluate", "predict", "cells", "tasks"),
    "rnnlab.cli.memory": ("memory",),
    "rnnlab.cli.recipe": ("recipe",),
    "rnnlab.cli.doctor": ("doctor", "gradients"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for names in _COMMANDS.values() for name in names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        for module, names in _COMMANDS.items():
            if name in names:
                return getattr(importlib.import_module(module), name.replace("-", "_"))
        return None


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
