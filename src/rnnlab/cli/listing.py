"""``rnnlab cells`` and ``rnnlab tasks``: what there is to train, and on what."""

from __future__ import annotations

import json

import click

from rnnlab.errors import RnnlabError


def _first_line(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip().rstrip(".")
    return ""


@click.command("cells")
@click.option("--json", "as_json", is_flag=True, help="Print {name: description} as JSON.")
def cells(as_json: bool) -> None:
    """List the recurrent cells."""
    from rnnlab.cells import CELLS

    described = {name: _first_line(CELLS[name].__doc__) for name in sorted(CELLS)}
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for name, text in described.items():
        click.echo(f"{name:<14} {text}")


@click.command("tasks")
@click.option("--json", "as_json", is_flag=True,
              help="Print {name: {description, memory}} as JSON.")
def tasks(as_json: bool) -> None:
    """List the tasks; for those in the memory suite, the axis, score and chance."""
    from rnnlab.tasks import task_class, task_names

    listed = {}
    for name in task_names():
        memory = None
        try:
            cls = task_class(name)
            text = cls.description or _first_line(cls.__doc__)
            if cls.memory_axis is not None:
                memory = _memory_line(cls)
        except ImportError as err:  # one broken optional task must not hide the others
            text = f"(unavailable: {err})"
        listed[name] = {"description": text, "memory": memory}
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    for name, entry in listed.items():
        click.echo(f"{name:<22} {entry['description']}")
        if entry["memory"] is not None:
            click.echo(f"{'':<22} {entry['memory']}")


def _memory_line(cls: type) -> str:
    """Axis, score and chance of a memory-suite task, at its default parameters."""
    axis = f"memory axis: {cls.memory_axis} ({cls.memory_axis_label})"
    options = dict(cls.memory_options)
    try:  # chance may depend on the parameters: those the suite gives the task
        memory = cls(**options).describe_memory()
    except (TypeError, RnnlabError, NotImplementedError):  # a user task without defaults
        return f"{axis}; metric: {cls.metric}; chance: depends on parameters without defaults"
    lengths = ", ".join(str(n) for n in cls.memory_lengths)
    given = "".join(f", {k}={v}" for k, v in sorted(options.items()))
    return (f"{axis}; score: {memory['score']}; chance {memory['chance']:.4g} "
            f"= score {memory['chance_score']:.3g}; suite: lengths {lengths}{given}")
