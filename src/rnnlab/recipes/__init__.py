"""Recipes: each seed experiment, reproduced faithfully by one command.

A recipe module defines ``Settings`` (a frozen dataclass whose defaults are the
seed's hyper-parameters), ``FAST`` (the changes of ``--fast``), ``SEED_REPORT``
(what the seed says it got) and ``run(out, fast=False, **overrides)``, which
writes its metrics CSV, plots, ``summary.json`` and ``README.md`` into ``out`` and
returns a :class:`~rnnlab.recipes.common.RecipeResult`. Modules are imported on
first use, so listing recipes stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from rnnlab.errors import RnnlabError
from rnnlab.recipes.common import RecipeResult

_RECIPE_MODULES: dict[str, str] = {
    "burst": "rnnlab.recipes.burst",
    "sine": "rnnlab.recipes.sine",
    "sin-cos": "rnnlab.recipes.sin_cos",
    "mnist-rows": "rnnlab.recipes.mnist_rows",
    "binary-pairs": "rnnlab.recipes.binary_pairs",
    "digitsum": "rnnlab.recipes.digitsum",
    "text-bilstm": "rnnlab.recipes.text_bilstm",
}


def recipe_names() -> list[str]:
    return list(_RECIPE_MODULES)


def recipe_module(name: str) -> ModuleType:
    """The module of recipe ``name``; an unknown name lists the known ones."""
    if name not in _RECIPE_MODULES:
        raise RnnlabError(f"unknown recipe {name!r}; known recipes: {', '.join(recipe_names())}")
    return importlib.import_module(_RECIPE_MODULES[name])


def describe(name: str) -> dict[str, Any]:
    """Name, one-line summary, the seed's reported result and the default settings."""
    module = recipe_module(name)
    first = (module.__doc__ or "").strip().splitlines()[0]
    # "Recipe ``x`` (seed 000): what it shows" -> "what it shows (seed 000)"
    match = re.match(r"Recipe ``[^`]+`` \((.+?)\): (.+)", first)
    summary = f"{match[2].rstrip('.')} ({match[1]})" if match else first
    return {"name": name, "summary": summary, "seed_report": module.SEED_REPORT,
            "settings": dataclasses.asdict(module.Settings())}


def run_recipe(name: str, out: str | Path, fast: bool = False, **overrides: Any) -> RecipeResult:
    """Run recipe ``name`` into folder ``out``; ``fast`` for a seconds-long check run.

    ``overrides`` set any field of the recipe's ``Settings`` by name (e.g. ``seed=3``,
    ``data_dir="data/mnist"``); an unknown one raises :class:`RnnlabError`.
    """
    return recipe_module(name).run(Path(out), fast=fast, **overrides)


__all__ = ["RecipeResult", "describe", "recipe_module", "recipe_names", "run_recipe"]
