"""``rnnlab doctor`` (diagnose a training script) and ``rnnlab gradients`` (the
gradient-through-time experiments)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rnnlab.cli.vocab import VocabCommand
from rnnlab.errors import RnnlabError


@click.command("doctor", context_settings={"ignore_unknown_options": True})
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              show_default="runs/doctor/SCRIPT", help="Folder for findings.json and the plots.")
@click.option("--max-steps", default=200, show_default=True, type=int,
              help="Stop the script after this many optimizer steps.")
@click.option("--max-seconds", default=60.0, show_default=True, type=float,
              help="Stop the script after this many seconds.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the findings as JSON (the script's own output goes to stderr).")
@click.option("--quiet", is_flag=True,
              help="Print nothing; the exit code says healthy (0) or not (1).")
def doctor(script: Path, args: tuple[str, ...], out: Path | None, max_steps: int,
           max_seconds: float, as_json: bool, quiet: bool) -> None:
    """Run SCRIPT [ARGS...] under observation and diagnose why its RNN does not learn.

    The script runs unmodified, in a child process the doctor owns and always stops,
    for at most --max-steps optimizer steps or --max-seconds seconds (a finite
    number). Every torch.nn.RNN/LSTM/GRU, RNNCell/LSTMCell/GRUCell (and rnnlab layer
    and cell) and every optimizer step is watched. Checks: a state carried across
    batches (or deliberate truncated BPTT), batch and time axes mixed in the model or
    in the data, a model that ignores the past, vanishing or exploding gradients
    through time, non-finite losses.

    Exit code 0 only when the script was watched and is healthy, 1 when something
    needs fixing or nothing could be checked. Put options of the script that share a
    name with the doctor's after `--`.
    """
    from rnnlab.doctor import run_script

    out = out if out is not None else Path("runs") / "doctor" / script.stem
    report = run_script(script, list(args), max_steps=max_steps, max_seconds=max_seconds,
                        out=out, quiet=as_json or quiet)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif not quiet:
        click.echo(report.format())
        click.echo(f"findings: {out / 'findings.json'} (the doctor took "
                   f"{report.wall_seconds:.1f} s in all)")
    if not report.healthy:
        raise click.exceptions.Exit(1)


@click.group("gradients")
def gradients() -> None:
    """Gradients through time: explosion and clipping (NNDL 6.2), vanishing by cell,
    LSTM gates (NNDL 6.3). Each writes PNG plots and CSV/JSON numbers to --out."""


def _out_option(default: str):
    return click.option("--out", default=default, show_default=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Folder for the plots and numbers.")


_fast = click.option("--fast", is_flag=True, help="A small, quick version (for tests).")
_seed = click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
                     help="Seeds the model, the data order and the data.")


def _printing(command):
    """``--json`` and ``--quiet``, as every command that prints results has them."""
    command = click.option("--quiet", is_flag=True, help="Print nothing (files are written).")(
        command)
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the numbers as JSON.")(command)


def _say(result: dict, lines: list[str], as_json: bool, quiet: bool, out: Path) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    elif not quiet:
        for line in [*lines, f"wrote {out}"]:
            click.echo(line)


@gradients.command("explosion", cls=VocabCommand,
                   renamed={"--clip": ("--clip-per-param", "{}")})
@_out_option("runs/gradients/explosion")
@_fast
@_seed
@click.option("--epochs", type=int, default=None, show_default="50; --fast: 3",
              help="Passes over the training split.")
@click.option("--length", type=int, default=20, show_default=True, help="Sequence length.")
@click.option("--lr", type=float, default=0.2, show_default=True, help="Learning rate.")
@click.option("--clip-per-param", "clip", type=float, default=5.0, show_default=True,
              help="Clip each parameter's own gradient norm to this, in the second run "
                   "(not the global norm of --clip-norm).")
@_printing
def explosion(out: Path, fast: bool, seed: int, epochs: int | None, length: int, lr: float,
              clip: float, as_json: bool, quiet: bool) -> None:
    """SRN on DigitSum with SGD: gradient norms of W, U and b every step, then the same
    run with each parameter's gradient clipped."""
    from rnnlab.doctor.gradients import ExplosionConfig, run_explosion
    from rnnlab.doctor.report_files import check_out_dir

    config = ExplosionConfig(length=length, lr=lr, clip=clip, seed=seed,
                             epochs=epochs if epochs is not None else (3 if fast else 50))
    check_out_dir(out)
    result = run_explosion(config, out)
    _say(result, [f"{name}: max gradient norm {run['max_norm']:.4g}, "
                  f"final train loss {run['final_loss']:.4g}"
                  for name, run in result["runs"].items()], as_json, quiet, out)


@gradients.command("vanishing")
@_out_option("runs/gradients/vanishing")
@_fast
@_seed
@click.option("--length", type=int, default=None, show_default="50", help="Sequence length.")
@click.option("--cells", default="srn,residual-srn,lstm,gru", show_default=True,
              help="Comma-separated cell names.")
@click.option("--epochs", type=int, default=None, show_default="60; --fast: 0",
              help="Also measure after training this many epochs.")
@_printing
def vanishing(out: Path, fast: bool, seed: int, length: int | None, cells: str,
              epochs: int | None, as_json: bool, quiet: bool) -> None:
    """|dL/dh_t| against time step t for each cell at one length, at initialisation and
    after training on DigitSum."""
    from rnnlab.doctor.gradients import VanishingConfig, run_vanishing
    from rnnlab.doctor.report_files import check_out_dir

    names = tuple(c.strip() for c in cells.split(",") if c.strip())
    if not names:
        raise RnnlabError(f"--cells needs a comma-separated list of cells, got {cells!r}")
    config = VanishingConfig(cells=names, seed=seed,
                             length=length if length is not None else 50,
                             batch=32 if fast else 100,
                             train_epochs=epochs if epochs is not None else (0 if fast else 60))
    check_out_dir(out)
    result = run_vanishing(config, out)
    lines = []
    for name, row in result["cells"].items():
        line = ", ".join(f"{stage}: |dL/dh_0| / |dL/dh_last| = {row[stage]['ratio']:.3g}"
                         for stage in ("init", "trained") if stage in row)
        if "test_accuracy" in row:
            line += f", test accuracy {row['test_accuracy']:.3f}"
        lines.append(f"{name}: {line}")
    _say(result, lines, as_json, quiet, out)


@gradients.command("gates", cls=VocabCommand, renamed={"--sequence": ("--example", "{}")})
@_out_option("runs/gradients/gates")
@_fast
@_seed
@click.option("--length", type=int, default=None, show_default="20", help="Sequence length.")
@click.option("--epochs", type=int, default=None, show_default="60; --fast: 2",
              help="Passes over the training split.")
@click.option("--example", "sequence", type=int, default=None,
              show_default="the first with a noise digit",
              help="Index of the test example to show.")
@_printing
def gates(out: Path, fast: bool, seed: int, length: int | None, epochs: int | None,
          sequence: int | None, as_json: bool, quiet: bool) -> None:
    """Input, forget and output gate activations of an LSTM trained on DigitSum."""
    from rnnlab.doctor.gradients import GatesConfig, run_gates
    from rnnlab.doctor.report_files import check_out_dir

    config = GatesConfig(seed=seed, length=length if length is not None else 20,
                         epochs=epochs if epochs is not None else (2 if fast else 60),
                         sequence=sequence)
    check_out_dir(out)
    result = run_gates(config, out)
    _say(result, [f"sequence {result['sequence']} (label {result['label']}), "
                  f"test accuracy {result['accuracy']:.3f}"], as_json, quiet, out)
