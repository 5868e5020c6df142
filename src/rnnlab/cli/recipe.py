"""``rnnlab recipe list`` and ``rnnlab recipe NAME``: reproduce a seed experiment.

Each recipe is a subcommand built from its ``Settings``: ``--out``, ``--fast``,
``--seed``, ``--data-dir`` (for recipes that read data) and ``--set KEY=VALUE`` for
any other setting, typed by the setting's field.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import click

from rnnlab.cli.values import parse_value
from rnnlab.errors import RnnlabError, ensure
from rnnlab.recipes import describe, recipe_module, recipe_names, run_recipe


def _settings_types(name: str) -> dict[str, Any]:
    settings = recipe_module(name).Settings
    hints = typing.get_type_hints(settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(settings)}


def parse_settings(name: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as typed overrides of recipe ``name``'s settings."""
    kinds = _settings_types(name)
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        ensure(bool(sep) and bool(key), f"--set expects KEY=VALUE, got {pair!r}")
        ensure(key in kinds, f"recipe {name!r} has no setting {key!r}; its settings: "
              + ", ".join(kinds))
        overrides[key] = parse_value(value, kinds[key], key, "--set")
    return overrides


def _recipe_command(name: str) -> click.Command:
    info = describe(name)
    has_data = "data_dir" in info["settings"]

    def callback(out: Path | None, fast: bool, seed: int | None, data_dir: Path | None = None,
                 settings: tuple[str, ...] = (), as_json: bool = False,
                 quiet: bool = False) -> None:
        overrides = parse_settings(name, settings)
        if seed is not None:
            overrides["seed"] = seed
        if data_dir is not None:
            overrides["data_dir"] = str(data_dir)
        folder = out or Path("runs") / "recipes" / (f"{name}-fast" if fast else name)
        if not (quiet or as_json):
            click.echo(f"recipe {name}{' (fast)' if fast else ''} -> {folder}", err=True)
        from rnnlab.io import ensure_dir

        ensure_dir(folder)
        result = run_recipe(name, folder, fast=fast, **overrides)
        if as_json:
            click.echo(json.dumps({**dataclasses.asdict(result),
                                   "beats_baseline": result.beats_baseline},
                                  indent=2, default=str))
        if quiet or as_json:
            return
        better = "beats" if result.beats_baseline else "does not beat"
        click.echo(f"{name}, {result.model}: test {result.metric} {result.score:.4f}, {better} "
                   f"the memoryless baseline {result.baseline:.4f} (chance {result.chance:.4f}); "
                   f"{result.seconds:.1f} s")
        click.echo(f"wrote {', '.join(result.files)} in {folder}")

    params: list[click.Parameter] = [
        click.Option(["--out"], type=click.Path(file_okay=False, path_type=Path),
                     show_default="runs/recipes/NAME", help="Folder for the results."),
        click.Option(["--fast"], is_flag=True,
                     help="A seconds-long check run with smaller settings, not the seed's."),
        click.Option(["--seed"], type=click.IntRange(0, 2**32 - 1), show_default="the recipe's",
                     help="Seeds the model, the data order and the data."),
        click.Option(["--set", "settings"], multiple=True, metavar="KEY=VALUE",
                     help="Any other setting, e.g. iterations=200 (repeatable; see "
                          "`rnnlab recipe list --verbose`)."),
        click.Option(["--json", "as_json"], is_flag=True,
                     help="Print the result (score, baseline, files) as JSON."),
        click.Option(["--quiet"], is_flag=True, help="Print nothing (files are written)."),
    ]
    if has_data:
        params.insert(2, click.Option(
            ["--data-dir"], type=click.Path(file_okay=False, path_type=Path),
            show_default="$RNNLAB_DATA_DIR or ~/.cache/rnnlab/...",
            help="Folder with the data files."))
    return click.Command(name, callback=callback, params=params,
                         help=f"{info['summary']}\n\nThe seed reports: {info['seed_report']}.",
                         short_help=info["summary"])


@click.command("list")
@click.option("--verbose", "-v", is_flag=True, help="Show every recipe's default settings.")
@click.option("--json", "as_json", is_flag=True,
              help="Print every recipe's summary, seed report and settings as JSON.")
def list_recipes(verbose: bool, as_json: bool) -> None:
    """List the recipes, what each reproduces and what the seed reports."""
    if as_json:
        click.echo(json.dumps({name: describe(name) for name in recipe_names()}, indent=2,
                              default=str))
        return
    for name in recipe_names():
        info = describe(name)
        click.echo(f"{name:14s} {info['summary']}")
        click.echo(f"{'':14s} seed reports: {info['seed_report']}")
        if verbose:
            settings = ", ".join(f"{k}={v}" for k, v in info["settings"].items())
            click.echo(f"{'':14s} settings: {settings}")


class _RecipeGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["list", *recipe_names()]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "list":
            return list_recipes
        if name in recipe_names():
            return _recipe_command(name)
        return None

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.list_commands(ctx) and not args[0].startswith("-"):
            raise RnnlabError(f"unknown recipe {args[0]!r}; known recipes: "
                              f"{', '.join(recipe_names())} (or `rnnlab recipe list`)")
        return super().resolve_command(ctx, args)


@click.group("recipe", cls=_RecipeGroup)
def recipe() -> None:
    """Reproduce a seed experiment: `rnnlab recipe list`, `rnnlab recipe NAME --out DIR`.

    Each recipe runs with the seed's hyper-parameters and writes its metrics CSV,
    plots, summary.json and a README.md saying what ran, what came out and what it
    means. --fast runs a seconds-long smaller version.
    """
