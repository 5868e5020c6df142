"""``rnnlab export``: a run's weights in a standard format, with a model card."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rnnlab.runs import FORMATS


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="safetensors",
              show_default=True, help="Weights format.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write model.safetensors, config.json and README.md into.")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best",
              show_default=True, help="Which checkpoint to export.")
@click.option("--json", "as_json", is_flag=True, help="Print the files written as JSON.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def export(run_dir: Path, fmt: str, out: Path, which: str, as_json: bool, quiet: bool) -> None:
    """Export a run folder's model: weights, config.json and a model card (README.md)."""
    from rnnlab.runs import export_run

    written = export_run(run_dir, out, fmt=fmt, which=which)
    if as_json:
        click.echo(json.dumps({"files": [str(path) for path in written]}, indent=2))
    elif not quiet:
        for path in written:
            click.echo(str(path))
