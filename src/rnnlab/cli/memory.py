"""``rnnlab memory``: the memory-capacity experiment from the command line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import typing
from collections.abc import Iterator
from pathlib import Path

import click

from rnnlab.cells.init import init_names
from rnnlab.cli.config import config_option, write_resolved
from rnnlab.cli.values import FloatGrid, parse_value
from rnnlab.cli.vocab import VocabCommand, task_param_aliases
from rnnlab.engine.population import WORKERS_ENV
from rnnlab.errors import RnnlabError
from rnnlab.experiments.grid import (
    DEFAULT_CELLS,
    DEFAULT_LENGTHS,
    DEFAULT_SEEDS,
    DEFAULT_THRESHOLD,
    SETTINGS,
    TASK,
    MemoryConfig,
)
from rnnlab.experiments.memory import run_memory
from rnnlab.experiments.runners import ENGINES
from rnnlab.protocols import protocol_names

# The task parameters an experiment may set (--task-param KEY=VALUE).
TASK_SETTINGS = tuple(name for name, (section, _) in SETTINGS.items() if section == "task")


def memory_task_params(pairs: tuple[str, ...]) -> dict[str, typing.Any]:
    """``--task-param KEY=VALUE`` pairs as typed :class:`MemoryConfig` fields."""
    kinds = typing.get_type_hints(MemoryConfig)
    params: dict[str, typing.Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not (sep and key):
            raise RnnlabError(f"--task-param expects KEY=VALUE, got {pair!r}")
        if key not in TASK_SETTINGS:
            raise RnnlabError(f"--task-param {key}: the experiment sets only these task "
                              f"parameters: {', '.join(TASK_SETTINGS)}")
        params[key] = parse_value(value, kinds[key], key, "--task-param")
    return params


@contextlib.contextmanager
def limit_workers(workers: int | None) -> Iterator[None]:
    """While the command runs, the engine uses at most ``workers`` threads."""
    before = os.environ.get(WORKERS_ENV)
    if workers is not None:
        os.environ[WORKERS_ENV] = str(workers)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORKERS_ENV, None)
        else:
            os.environ[WORKERS_ENV] = before


def _names(text: str, option: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise RnnlabError(f"{option} needs a comma-separated list, got {text!r}")
    return names


def _ints(text: str, option: str) -> tuple[int, ...]:
    values = []
    for part in _names(text, option):
        try:
            values.append(int(part))
        except ValueError:
            raise RnnlabError(
                f"{option} must be comma-separated whole numbers such as 5,10,20; "
                f"got {part!r}") from None
    return tuple(values)


def _cells(text: str, models: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """``--cells``: names, or ``none`` / ``""`` for only the ``--model`` factories."""
    if text.strip().lower() not in ("", "none"):
        return _names(text, "--cells")
    if not models:
        raise RnnlabError(f"--cells {text!r} leaves nothing to train; give at least one "
                          "--model NAME=path/to/file.py:build, or cell names in --cells")
    return ()


def _models(given: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``NAME=path/to/file.py:build`` options as (name, reference) pairs."""
    pairs = []
    for text in given:
        name, eq, ref = text.partition("=")
        if not eq or not name.strip() or not ref.strip():
            raise RnnlabError(f"--model needs NAME=path/to/file.py:build (or "
                              f"NAME=package.module:build), got {text!r}")
        pairs.append((name.strip(), ref.strip()))
    return tuple(pairs)


@config_option
@click.command("memory", cls=VocabCommand,
               renamed={"--clip": ("--clip-norm", "{}"), **task_param_aliases(*TASK_SETTINGS)})
@click.option("--cells", default=",".join(DEFAULT_CELLS), show_default=True,
              help="Comma-separated built-in cell names or path/to/file.py:MyCell / "
                   "package.module:MyCell (a RecurrentCell subclass). The built-ins stay "
                   "beside your --model as the baseline; --cells none trains only the "
                   "--model factories.")
@click.option("--lengths", default=None,
              show_default="each task's own; digitsum: " + ",".join(map(str, DEFAULT_LENGTHS)),
              help="Comma-separated values of each task's memory axis (for digitsum the "
                   "sequence length, each >= 3).")
@click.option("--seeds", default=DEFAULT_SEEDS, show_default=True, type=int,
              help="Seeds per cell and length (seeds 0 .. N-1).")
@click.option("--threshold", default=DEFAULT_THRESHOLD, show_default=True, type=float,
              help="Mean test accuracy a length must reach to count as remembered.")
@click.option("--protocol", default="default", show_default=True,
              type=click.Choice(protocol_names()),
              help="Named set of training settings; 'nndl' is seed 004 exactly.")
@click.option("--engine", default=MemoryConfig.engine, show_default=True,
              type=click.Choice(sorted(ENGINES)),
              help="How runs are trained; results agree to float tolerance.")
@click.option("--out", default="runs/memory", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for results.csv, summary.json, the figures and report.html.")
@click.option("--hidden", "hidden_size", type=int, help="Hidden units (protocol default).")
@click.option("--embedding", "embedding_dim", type=int, help="Embedding size.")
@click.option("--epochs", type=int, help="Passes over the training split.")
@click.option("--batch-size", type=int, help="Examples per optimiser step.")
@click.option("--lr", type=FloatGrid(min=0, min_open=True),
              help="Learning rate, or a comma-separated grid (best dev is reported).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), help="Optimiser.")
@click.option("--clip-norm", "clip", type=float,
              help="Clip the global gradient norm to this value (0: no clipping).")
@click.option("--eval-every", type=int, help="Evaluate on dev every N steps.")
@click.option("--init", type=click.Choice(init_names()), help="Cell initialiser.")
@click.option("--shuffle/--no-shuffle", default=None, help="Shuffle training batches.")
@click.option("--task-param", "task_param", multiple=True, metavar="KEY=VALUE",
              help="A task parameter, e.g. k_test=20 (DigitSum copies per digit pair; "
                   f"repeatable; known: {', '.join(TASK_SETTINGS)}).")
@click.option("--workers", type=click.IntRange(min=1),
              show_default="the CPUs this process may use",
              help="Cores the experiment may use: threads of the C-kernel engine, "
                   "processes of the generic path (your own models), side by side.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@click.option("--quiet", is_flag=True, help="No progress and no horizon lines.")
@click.option("--retry-failed", is_flag=True,
              help="Train again the runs recorded as failed (a rerun skips them otherwise).")
# --- the memory suite (issue 12): tasks, your own models, fair comparison ---------------
@click.option("--tasks", default=TASK, show_default=True,
              help="Comma-separated memory tasks (rnnlab tasks lists them, with their axis).")
@click.option("--model", "models", multiple=True, metavar="NAME=FILE.py:build",
              help="A model factory of your own, named NAME (repeatable).")
@click.option("--weight-decay", type=FloatGrid(min=0),
              help="Weight decay, or a comma-separated grid.")
@click.option("--match-params", type=int,
              help="Scale each model's hidden size so its parameter count is near N.")
# --- where the runs train (issue 17): this machine or a Ray cluster ------------------------
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="Train here, or send each group of runs to a Ray cluster as one Ray task "
                   "(pip install \"rnnlab[ray]\"); same files and results either way.")
@click.option("--address", default=None, show_default="a Ray instance started for this run",
              help="With --backend ray: the cluster to join, 'auto' (the one 'ray start' "
                   "started on this machine) or HOST:PORT.")
@click.option("--cpus-per-task", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --backend ray: CPUs each group of runs asks for (and the threads "
                   "the engine uses in it).")
@click.pass_context
def memory(ctx: click.Context, cells: str, lengths: str | None, out: Path, retry_failed: bool,
           tasks: str, models: tuple[str, ...], lr: tuple[float, ...] | None,
           weight_decay: tuple[float, ...] | None,
           **options) -> None:
    """Train models x tasks x lengths x seeds and report each model's memory horizon.

    Built-in cells, your own cells (--cells file.py:MyCell) and models (--model
    NAME=file.py:build), on any memory task (--tasks digitsum,copy,...). With a grid
    (--lr 1e-3,5e-3 --weight-decay 0,0.1) the best dev setting is reported.

    Rerunning with the same --out trains only the runs not finished yet. A run whose
    training fails (a non-finite loss) is recorded as failed and the others go on;
    --retry-failed trains the failed ones again.
    """
    as_json, quiet = options.pop("as_json"), options.pop("quiet")
    backend, address = options.pop("backend"), options.pop("address")
    cpus_per_task = options.pop("cpus_per_task")
    if backend == "local" and (address is not None or cpus_per_task != 1):
        raise RnnlabError("--address and --cpus-per-task are for --backend ray")
    ctx.with_resource(limit_workers(options.pop("workers")))
    options.update(memory_task_params(options.pop("task_param")))
    pairs = _models(models)
    config = MemoryConfig(cells=_cells(cells, pairs),
                          lengths=None if lengths is None else _ints(lengths, "--lengths"),
                          tasks=_names(tasks, "--tasks"), models=pairs,
                          lr=lr, weight_decay=weight_decay,
                          **options)
    runner = None
    if backend == "ray":
        from rnnlab.experiments.distributed import ray_runner

        runner = ray_runner(config.validate().engine, address=address,
                            cpus_per_task=cpus_per_task)
    # Under --quiet the per-group path notes and the closing count are held back; an
    # error or an interruption is still said (below, outside this block).
    held_back = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
    try:
        with held_back:
            outcome = run_memory(config, out, runner=runner, retry_failed=retry_failed,
                                 progress=False if (quiet or as_json) else None)
    except KeyboardInterrupt:
        click.echo(f"rnnlab memory: interrupted; every finished run is kept in "
                   f"{out / 'results.csv'}: rerun the same command to go on from there",
                   err=True)
        raise click.exceptions.Exit(130) from None
    write_resolved(ctx, out)
    if as_json:
        click.echo(json.dumps(outcome.summary, indent=2, default=str))
    elif not quiet:
        for task, info in outcome.summary["tasks"].items():
            if len(outcome.summary["tasks"]) > 1:
                click.echo(f"{task}:")
            for entry in info["models"].values():
                click.echo(entry["horizon_text"])
    failed = outcome.summary["runs"]["failed"]
    if failed:
        click.echo(f"{failed} run(s) failed; see the report's 'Every run' table for why, "
                   "and rerun with --retry-failed to try them again", err=True)
    if not (quiet or as_json):
        click.echo(f"Report: {outcome.report}")
