"""The models and tasks of a memory experiment: built-in cells, a user's cell or factory.

A model of the experiment is named (``lstm``, ``MyCell``, ``mine``) and comes from one
of three places: a built-in cell name, a ``path/to/file.py:MyCell`` or
``package.module:MyCell`` (a :class:`~rnnlab.cells.RecurrentCell` subclass, trained in
the :class:`~rnnlab.layers.Recurrent` layer like the built-ins), or a factory
(``--model NAME=path.py:build``, or ``MemoryConfig(models={"mine": build})`` with a
callable). :func:`resolve_models` loads them all and :func:`check_models` builds each
on a probe batch of every task, so a mistake is one sentence before any training.

Runs are rebuilt from their :class:`~rnnlab.experiments.grid.RunSpec` alone:
``spec.model_ref`` finds the loaded model again (:func:`user_model`), ``spec.task`` and
``spec.length`` the task (:func:`task_for`).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError, ensure

# Loaded user models by reference, so a runner can rebuild a spec's model from the spec.
_LOADED: dict[str, Any] = {}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class ModelEntry:
    """One model of the experiment: its name, kind (``""`` built-in cell, ``"cell"``,
    ``"factory"``), reference (how to load it again) and source hash."""

    name: str
    kind: str
    ref: str
    source_hash: str


def _from_object(name: str, obj: Any) -> Any:
    """A :class:`~rnnlab.usermodels.UserModel` for a Python object (class or callable)."""
    from rnnlab.cells.base import RecurrentCell
    from rnnlab.usermodels import UserModel, source_hash

    is_cell = isinstance(obj, type) and issubclass(obj, RecurrentCell)
    ensure(is_cell or callable(obj),
          f"model {name!r} is a {type(obj).__name__}, neither a RecurrentCell subclass, a "
          "function returning an nn.Module, nor a 'path/to/file.py:Name' string")
    try:
        path = Path(inspect.getsourcefile(obj) or "")
    except TypeError:
        path = Path("")
    path = path.resolve() if path.name and path.is_file() else None
    label = getattr(obj, "__qualname__", type(obj).__name__)
    ref = f"python:{getattr(obj, '__module__', '?')}.{label}"
    return UserModel(ref, label, obj, "cell" if is_cell else "factory", path,
                     "" if path is None else source_hash(path))


def resolve_models(cells: tuple[str, ...], models: tuple[tuple[str, Any], ...]
                   ) -> list[ModelEntry]:
    """Every model of the experiment in order: ``cells`` (built-in names or
    ``where:Class``), then ``models`` (name -> ``where:factory`` or a Python object)."""
    from rnnlab.cells import CELLS
    from rnnlab.usermodels import load_model

    entries: list[ModelEntry] = []
    for cell in cells:
        if ":" not in cell:
            ensure(cell in CELLS, f"unknown cell {cell!r} in --cells; known cells: "
                  f"{', '.join(CELLS)}, or path/to/file.py:MyCell")
            entries.append(ModelEntry(cell, "", "", ""))
            continue
        user = load_model(cell)
        ensure(user.kind == "cell", f"{user.label} is not a RecurrentCell subclass; give a "
              "factory with --model NAME=path/to/file.py:build instead of --cells")
        _LOADED[cell] = user
        entries.append(ModelEntry(user.name, "cell", cell, user.source_hash))
    for name, obj in models:
        ensure(isinstance(name, str) and bool(_NAME.match(name)),
              f"model name {name!r} must be letters, digits, '_', '.', '+' or '-' (it names "
              "run folders)")
        user = load_model(obj) if isinstance(obj, str) else _from_object(name, obj)
        ref = obj if isinstance(obj, str) else user.spec
        _LOADED[ref] = user
        entries.append(ModelEntry(name, user.kind, ref, user.source_hash))
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    ensure(not dupes, f"two models are named {', '.join(dupes)}; give each a different name")
    return entries


def user_model(ref: str) -> Any:
    """The loaded user model of a spec's ``model_ref`` (loaded again from a file if this
    process has not seen it, e.g. a worker)."""
    from rnnlab.usermodels import load_model

    if ref not in _LOADED:
        ensure(not ref.startswith("python:"),
              f"model {ref} was given as a Python object in another process; give it as "
              "path/to/file.py:Name so this process can load it")
        _LOADED[ref] = load_model(ref)
    return _LOADED[ref]


def task_params(task_name: str, k_train: int, k_dev: int, k_test: int) -> dict[str, Any]:
    """Split sizes for a task: DigitSum's ``k_*`` (copies of its 100 digit pairs), and
    ``100 * k`` examples for a task with ``n_train/n_dev/n_test`` fields, so one
    ``--task-param k_train=3`` means 300 training examples on every task."""
    import dataclasses

    from rnnlab.tasks import task_class

    fields = {f.name for f in dataclasses.fields(task_class(task_name))}
    params: dict[str, Any] = {}
    for key, k in (("train", k_train), ("dev", k_dev), ("test", k_test)):
        if f"k_{key}" in fields:
            params[f"k_{key}"] = k
        elif f"n_{key}" in fields:
            params[f"n_{key}"] = 100 * k
    return params


def task_for(spec: Any) -> Any:
    """The task of a spec at its value of the task's memory axis."""
    from rnnlab.tasks import memory_task

    return memory_task(spec.task, spec.length, **dict(getattr(spec, "task_options", ())),
                       **task_params(spec.task, spec.k_train, spec.k_dev, spec.k_test))


def build_for(spec: Any, task: Any, steps: int) -> Any:
    """A new module for ``spec`` on ``task`` (inputs of ``steps`` steps), drawn from
    torch's global generator (seed first). Built-in cells go in a
    :class:`~rnnlab.usermodels.CellModel`, which the generic lock-step path can vmap."""
    from rnnlab.cells import CELLS
    from rnnlab.usermodels import CellModel, model_kwargs

    kwargs = model_kwargs(task, steps)
    extra = dict(spec.model_extra)
    cell_options = {"hidden_size": spec.hidden_size, "embedding_dim": spec.embedding_dim,
                    "init": spec.init,
                    **{k: extra[k] for k in ("init_std",) if k in extra}}
    if spec.model_kind == "":
        sizes = {k: kwargs[k] for k in ("vocab_size", "input_size") if k in kwargs}
        return CellModel(CELLS[spec.cell], kwargs["num_outputs"], kwargs["head"], **sizes,
                         **cell_options)
    user = user_model(spec.model_ref)
    if user.kind == "cell":
        return user.build(kwargs, **cell_options)
    return user.build({**kwargs, "hidden_size": spec.hidden_size})


def check_models(specs: list[Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Build every (model, task, hidden size) once on a probe batch of the task at its
    shortest and longest length, before any training; return each one's parameter count
    and state size by ``(model, task, hidden_size)``. A mistake raises one sentence
    naming the model's file and function (:class:`RnnlabError`)."""
    from rnnlab.seeding import seed_everything
    from rnnlab.usermodels import check_output, count_parameters, model_kwargs, state_size

    sizes: dict[tuple[str, str, int], dict[str, Any]] = {}
    seen: set[tuple[str, str, int, int]] = set()
    by_key: dict[tuple[str, str, int], list[Any]] = {}
    for spec in specs:
        by_key.setdefault((spec.cell, spec.task, spec.hidden_size), []).append(spec)
    for key, group in by_key.items():
        lengths = sorted({s.length for s in group})
        for length in (lengths[0], lengths[-1]):
            spec = next(s for s in group if s.length == length)
            if (*key, length) in seen:
                continue
            seen.add((*key, length))
            task = task_for(_probe_sizes(spec))
            probe = task.splits(seed=0)["train"]
            steps = probe.inputs.shape[1]
            seed_everything(0)
            module = build_for(spec, task, steps)
            label = spec.model_ref or spec.cell
            check_output(module, model_kwargs(task, steps), probe.inputs[:2],
                         None if probe.lengths is None else probe.lengths[:2], label)
            sizes[key] = {"params": count_parameters(module), "state_size": state_size(module)}
    return sizes


def _probe_sizes(spec: Any) -> Any:
    """The spec with the smallest splits, so probing a task costs next to nothing."""
    import dataclasses

    return dataclasses.replace(spec, k_train=1, k_dev=1, k_test=1)


def match_hidden(spec: Any, target: int) -> int:
    """The hidden size (1 .. 1024) whose model's parameter count is nearest ``target``."""
    import dataclasses

    from rnnlab.usermodels import count_parameters

    task = task_for(_probe_sizes(spec))
    steps = task.splits(seed=0)["train"].inputs.shape[1]

    def params(hidden: int) -> int:
        return count_parameters(build_for(dataclasses.replace(spec, hidden_size=hidden),
                                          task, steps))

    low, high = 1, 1024
    if params(high) == params(low):
        raise RnnlabError(f"--match-params cannot scale model {spec.cell!r}: its parameter "
                          "count does not change with hidden_size (a factory must take a "
                          "hidden_size keyword to be matched)")
    while high - low > 1:
        mid = (low + high) // 2
        if params(mid) < target:
            low = mid
        else:
            high = mid
    return min((low, high), key=lambda h: abs(params(h) - target))
