"""Tasks: generators and loaders with their metric, chance level and memoryless baseline.

Tasks are registered by name in ``_TASK_MODULES`` (name -> "module:Class") and
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import SplitData, Task

_TASK_MODULES: dict[str, str] = {
    "digitsum": "rnnlab.tasks.digitsum:DigitSum",
    "burst": "rnnlab.tasks.burst:Burst",
    "sine": "rnnlab.tasks.sine:Sine",
    "sin-cos": "rnnlab.tasks.sin_cos:SinCos",
    "mnist-rows": "rnnlab.tasks.mnist:MnistRows",
    "pixel-mnist": "rnnlab.tasks.mnist:PixelMnist",
    "permuted-pixel-mnist": "rnnlab.tasks.mnist:PermutedPixelMnist",
    "binary-pairs": "rnnlab.tasks.binary_pairs:BinaryPairs",
    "adding": "rnnlab.tasks.adding:Adding",
    "copy": "rnnlab.tasks.copy_task:Copy",
    "text": "rnnlab.tasks.text:Text",
}


def task_names() -> list[str]:
    return sorted(_TASK_MODULES)


def task_class(name: str) -> type[Task]:
    if name not in _TASK_MODULES:
        raise RnnlabError(
            f"unknown task {name!r}; known tasks: {', '.join(task_names())}"
        )
    module, cls = _TASK_MODULES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(name: str, **params: Any) -> Task:
    """Build the task called ``name`` with its parameters (e.g. ``length=20``)."""
    return task_class(name)(**params)


__all__ = ["SplitData", "Task", "get_task", "task_class", "task_names"]
