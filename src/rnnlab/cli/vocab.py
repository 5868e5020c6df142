"""One vocabulary across commands: the old spellings of renamed options.

Every concept has one option name in every command (the table in the README's
"Habits" section; ``tests/test_cli_vocabulary.py`` walks every command to keep it
so). An option renamed for that keeps its old spelling for one release as a hidden
alias: :class:`VocabCommand` rewrites it to the new one before click parses the
command line, with one deprecation line on stderr, and ``--config`` files accept the
old key the same way (:func:`renamed_key`).
"""

from __future__ import annotations

from typing import Any

import click

# old spelling -> (new option, how the value is written for it)
Renames = dict[str, tuple[str, str]]


def task_param_aliases(*names: str) -> Renames:
    """``--k-test 20`` -> ``--task-param k_test=20`` for each task parameter in ``names``."""
    return {f"--{name.replace('_', '-')}": ("--task-param", f"{name}={{}}") for name in names}


class VocabCommand(click.Command):
    """A command that still understands the old spellings in ``renamed``."""

    def __init__(self, *args: Any, renamed: Renames | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renamed: Renames = dict(renamed or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite(self.renamed, args, ctx.command_path))


def rewrite(renamed: Renames, args: list[str], where: str) -> list[str]:
    """``args`` with each old spelling (``--clip 5``, ``--clip=5``) in its new form."""
    out: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":  # what follows belongs to someone else (doctor's script)
            out += [arg, *rest]
            break
        name, eq, value = arg.partition("=")
        if name not in renamed:
            out.append(arg)
            continue
        new, template = renamed[name]
        if not eq:
            if not rest:  # let click say the value is missing, under the new name
                out.append(new)
                continue
            value = rest.pop(0)
        click.echo(f"rnnlab: note: {where} {name} is now {new} {template.format('VALUE')}; "
                   "the old spelling goes away in the next release", err=True)
        out += [new, template.format(value)]
    return out


def renamed_key(command: click.Command, key: str, value: Any) -> tuple[str, Any] | None:
    """A ``--config`` key under its old spelling, as ``(new option name, value)``."""
    renamed = getattr(command, "renamed", {})
    for spelling in (f"--{key}", f"--{key.replace('_', '-')}"):
        if spelling in renamed:
            new, template = renamed[spelling]
            return new[2:], value if template == "{}" else template.format(value)
    return None
