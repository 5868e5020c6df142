"""Tasks: generators and loaders with their metric, chance level and memoryless baseline.

Built-in tasks are registered by name in ``_TASK_MODULES`` (name -> "module:Class")
and imported on first use. A user's own :class:`Task` subclass joins them with
:func:`register_task`, after which ``get_task``, ``task_names`` and ``rnnlab tasks``
treat it exactly like a built-in one.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, TypeVar

from rnnlab.errors import RnnlabError, ensure
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
    "selective-copy": "rnnlab.tasks.selective_copy:SelectiveCopy",
    "associative-recall": "rnnlab.tasks.associative_recall:AssociativeRecall",
}
_USER_TASKS: dict[str, type[Task]] = {}

T = TypeVar("T", bound=type[Task])


def task_names() -> list[str]:
    return sorted({*_TASK_MODULES, *_USER_TASKS})


def memory_task_names() -> list[str]:
    """The tasks that declare a memory axis (built-in or registered), so the suite can run them."""
    names = []
    for name in task_names():
        try:
            if task_class(name).memory_axis is not None:
                names.append(name)
        except ImportError:  # an optional task whose extra is missing is simply not offered
            continue
    return names


def register_task(cls: T, *, replace: bool = False) -> T:
    """Register a user's :class:`Task` subclass under ``cls.name``; usable as a decorator.

    The class must be a dataclass (its parameters are fields, as for every task) with
    a ``name`` that is not a built-in task's. Registering another class under a name
    already registered needs ``replace=True``, so two tasks never silently swap.
    """
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise RnnlabError(f"register_task needs a subclass of rnnlab.tasks.Task, got {cls!r}")
    name = cls.name
    if not (isinstance(name, str) and name.strip() == name and name):
        raise RnnlabError(f"task class {cls.__name__} needs a class attribute name, a non-empty "
                          f"string without surrounding spaces; got {name!r}")
    if name in _TASK_MODULES:
        raise RnnlabError(f"task name {name!r} is a built-in task's; give {cls.__name__} "
                          "another name")
    if "__dataclass_fields__" not in vars(cls):  # inherited fields miss its own
        raise RnnlabError(f"task class {cls.__name__} must be a @dataclass (its parameters "
                          "are dataclass fields, as for every task)")
    axis = cls.memory_axis
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    if axis is not None and axis not in fields:
        raise RnnlabError(f"task class {cls.__name__} has memory_axis={axis!r}, which is not "
                          f"one of its fields ({', '.join(sorted(fields)) or 'none'})")
    known = _USER_TASKS.get(name)
    if known is not None and known is not cls and not replace:
        raise RnnlabError(f"a task named {name!r} is already registered ({known.__module__}."
                          f"{known.__qualname__}); pass replace=True to replace it")
    _USER_TASKS[name] = cls
    return cls


def unregister_task(name: str) -> None:
    """Remove a task registered with :func:`register_task` (built-ins stay)."""
    ensure(name in _USER_TASKS, f"no user task named {name!r} is registered")
    del _USER_TASKS[name]


def task_class(name: str) -> type[Task]:
    if name in _USER_TASKS:
        return _USER_TASKS[name]
    if name not in _TASK_MODULES:
        raise RnnlabError(
            f"unknown task {name!r}; known tasks: {', '.join(task_names())}"
        )
    module, cls = _TASK_MODULES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(name: str, **params: Any) -> Task:
    """Build the task called ``name`` with its parameters (e.g. ``length=20``)."""
    return task_class(name)(**params)


def memory_task(name: str, value: int, **params: Any) -> Task:
    """The task ``name`` at ``value`` along its memory axis (what ``--lengths`` walks)."""
    cls = task_class(name)
    ensure(cls.memory_axis is not None,
          f"task {name!r} has no memory axis, so the memory experiment cannot run it; "
          f"tasks that have one: {', '.join(memory_task_names())}")
    ensure(cls.memory_axis not in params,
          f"{cls.memory_axis} of task {name!r} is set by the memory axis; do not also pass it")
    return cls(**{cls.memory_axis: value}, **params)


__all__ = ["SplitData", "Task", "get_task", "memory_task", "memory_task_names", "register_task",
           "task_class", "task_names", "unregister_task"]
