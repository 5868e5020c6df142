"""The memory experiment's grid: what is asked (:class:`MemoryConfig`) and what one
run is (:class:`RunSpec`).

A run is identified by the hash of its :class:`RunSpec` (everything that can
change its result, nothing that cannot: not the engine, not the threshold), so a
rerun trains only the specs whose hash has no row yet and a changed option
retrains only what it changes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rnnlab.errors import ensure
from rnnlab.protocols import get_protocol

TASK = "digitsum"
DEFAULT_CELLS: tuple[str, ...] = ("srn", "residual-srn", "lstm", "gru")
DEFAULT_LENGTHS: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35)
DEFAULT_SEEDS = 3
DEFAULT_THRESHOLD = 0.9
# Part of every run's hash: bump it when the meaning of a spec field changes, so
# old rows are no longer taken for results of the new definition.
SPEC_VERSION = 1
# Fields added to RunSpec after version 1: left out of the hash while at their default, so
# every DigitSum run of a built-in cell keeps the hash it had (no migration needed).
_LATER_FIELDS = {"weight_decay": 0.0, "model_kind": "", "model_source": "",
                 "task_options": {}}
# Where the run's model comes from (a file path or a Python name): not part of the hash,
# because moving a model file does not change a result; its content (model_source) does.
_UNHASHED = ("model_ref",)
# Seeds reach numpy's and torch's generators, which take 32-bit values.
MAX_SEEDS = 2**32
# Parameters are float32: a learning rate or clip beyond this cannot even be applied.
MAX_FLOAT32 = 3.4028234663852886e38

# Each setting of a run that the experiment names and the user may override, and
# where a protocol (rnnlab.protocols) keeps it: (section, key). Anything else a
# protocol sets travels with the run as ``model_extra``/``train_extra``.
SETTINGS: dict[str, tuple[str, str]] = {
    "k_train": ("task", "k_train"),
    "k_dev": ("task", "k_dev"),
    "k_test": ("task", "k_test"),
    "embedding_dim": ("model", "embedding_dim"),
    "hidden_size": ("model", "hidden_size"),
    "init": ("model", "init"),
    "optimizer": ("train", "optimizer"),
    "lr": ("train", "lr"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "shuffle": ("train", "shuffle"),
    "eval_every": ("train", "eval_every"),
    "clip": ("train", "clip_norm"),
}
# Set by the grid point, never by a protocol.
_GRID_KEYS = {"model": {"cell"}, "train": {"seed"}, "task": {"length"}}


def _defaults(section: str) -> dict[str, Any]:
    """Field defaults of the config a section feeds (a protocol may leave some unset)."""
    from rnnlab.models import ModelConfig
    from rnnlab.tasks import task_class
    from rnnlab.train import TrainConfig

    cls = {"model": ModelConfig, "train": TrainConfig, "task": task_class(TASK)}[section]
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's result; its hash names the run."""

    cell: str
    length: int
    seed: int
    k_train: int
    k_dev: int
    k_test: int
    embedding_dim: int
    hidden_size: int
    init: str
    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    shuffle: bool
    eval_every: int
    clip: float | None
    model_extra: tuple[tuple[str, Any], ...] = ()
    train_extra: tuple[tuple[str, Any], ...] = ()
    task: str = TASK
    weight_decay: float = 0.0
    # "" for a built-in cell (``cell`` is its registry name); "cell" for a user's
    # RecurrentCell subclass, "factory" for a user's module factory (``cell`` is then the
    # model's name in the experiment); ``model_source`` hashes the defining file.
    model_kind: str = ""
    model_source: str = ""
    model_ref: str = ""
    # The task's own options beyond its memory axis and split sizes (its class's
    # ``memory_options``: the suite-sized version of the task), part of the hash.
    task_options: tuple[tuple[str, Any], ...] = ()

    @property
    def model(self) -> str:
        """The model's name in results and the report (a built-in cell's own name)."""
        return self.cell

    def asdict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_extra"], d["train_extra"] = dict(self.model_extra), dict(self.train_extra)
        d["task_options"] = dict(self.task_options)
        return d

    @functools.cached_property
    def config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the spec as canonical JSON (computed once:
        a spec is frozen)."""
        d = self.asdict()
        for name in _UNHASHED:
            d.pop(name)
        for name, default in _LATER_FIELDS.items():
            if d[name] == default:
                d.pop(name)
        payload = {"version": SPEC_VERSION, **d}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def run_id(self) -> str:
        """A folder name a person can read and that still cannot collide."""
        task = "" if self.task == TASK else f"-{self.task}"
        return f"{self.cell}{task}-L{self.length}-s{self.seed}-{self.config_hash[:8]}"


def known_cells() -> list[str]:
    """Cell names the cell registry knows (``rnnlab.cells.CELLS``)."""
    from rnnlab.cells import CELLS

    return list(CELLS)


def known_inits() -> list[str]:
    """Initialiser names the cells accept (``rnnlab.cells.init_names``)."""
    from rnnlab.cells import init_names

    return list(init_names())


def _values(value: Any) -> tuple[Any, ...]:
    """A grid option's values: one value, or a list/tuple of them (``None``: unset)."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


@dataclass(frozen=True)
class MemoryConfig:
    """The whole memory experiment.

    ``seeds`` is how many seeds (``0 .. seeds-1``) each model, task and length gets.
    ``cells`` are built-in cell names or ``path/to/file.py:MyCell`` /
    ``package.module:MyCell``; ``models`` maps more names to factories
    (``"path.py:build"`` or a Python callable). ``tasks`` are memory tasks (built-in
    or registered with :func:`rnnlab.tasks.register_task`); ``lengths`` are values of
    each task's memory axis, ``None`` meaning each task's own ``memory_lengths``.
    ``lr`` and ``weight_decay`` may be lists: a grid, of which the best *dev* score per
    model, task and length is reported. ``match_params`` scales each model's hidden
    size to about that many parameters. The other hyper-parameter fields default to
    ``None``, meaning "whatever ``protocol`` says". ``engine`` chooses how runs are
    trained and never changes a result beyond float tolerance, so it is not part of
    any run's hash.
    """

    cells: tuple[str, ...] = DEFAULT_CELLS
    lengths: tuple[int, ...] | None = None
    seeds: int = DEFAULT_SEEDS
    threshold: float = DEFAULT_THRESHOLD
    protocol: str = "default"
    engine: str = "fast"
    k_train: int | None = None
    k_dev: int | None = None
    k_test: int | None = None
    embedding_dim: int | None = None
    hidden_size: int | None = None
    init: str | None = None
    optimizer: str | None = None
    lr: Any = None
    batch_size: int | None = None
    epochs: int | None = None
    shuffle: bool | None = None
    eval_every: int | None = None
    clip: float | None = None
    tasks: tuple[str, ...] = (TASK,)
    models: Any = ()
    weight_decay: Any = None
    match_params: int | None = None

    def __post_init__(self) -> None:
        # Lists from Python callers become tuples so the config stays hashable.
        object.__setattr__(self, "cells", tuple(self.cells))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.lengths is not None:
            object.__setattr__(self, "lengths", tuple(self.lengths))
        models = self.models.items() if isinstance(self.models, dict) else self.models
        object.__setattr__(self, "models", tuple((str(k), v) for k, v in models))
        for name in ("lr", "weight_decay"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def lengths_for(self, task: str) -> tuple[int, ...]:
        """The values of ``task``'s memory axis this experiment walks, in increasing order."""
        from rnnlab.tasks import task_class

        return tuple(sorted(self.lengths if self.lengths is not None
                            else task_class(task).memory_lengths))

    def validate(self) -> MemoryConfig:
        """Raise :class:`RnnlabError` with one sentence for the first bad value."""
        from rnnlab.experiments.models import resolve_models
        from rnnlab.experiments.runners import ENGINES
        from rnnlab.tasks import memory_task_names, task_class

        ensure(len(self.cells) + len(self.models) > 0, "--cells needs at least one cell name")
        ensure(len(set(self.cells)) == len(self.cells), "--cells lists a cell twice")
        ensure(len(self.tasks) > 0, "--tasks needs at least one task name")
        ensure(len(set(self.tasks)) == len(self.tasks), "--tasks lists a task twice")
        suite = memory_task_names()
        for task in self.tasks:
            ensure(task in suite, f"unknown memory task {task!r} in --tasks; known: "
                  f"{', '.join(suite)} (or a Task registered with rnnlab.tasks.register_task)")
        resolve_models(self.cells, self.models)
        if self.lengths is not None:
            ensure(len(self.lengths) > 0, "--lengths needs at least one length")
            ensure(len(set(self.lengths)) == len(self.lengths), "--lengths lists a length twice")
        for task in self.tasks:
            least = 3 if task == TASK else 1
            for length in self.lengths_for(task):
                what = ("two digits to sum and at least one step of distraction"
                        if task == TASK else task_class(task).memory_axis_label)
                ensure(isinstance(length, int) and length >= least,
                      f"every length must be an integer >= {least} ({what}), got {length!r} "
                      f"in --lengths for task {task}")
        ensure(isinstance(self.seeds, int) and 1 <= self.seeds <= MAX_SEEDS,
              f"--seeds must be a whole number >= 1 and at most {MAX_SEEDS} (seeds index "
              f"the random generators), got {self.seeds!r}")
        ensure(isinstance(self.threshold, (int, float)) and 0.0 < self.threshold <= 1.0,
              f"--threshold must be in (0, 1] (a score), got {self.threshold!r}")
        get_protocol(self.protocol)
        ensure(self.engine in ENGINES,
              f"unknown engine {self.engine!r}; known engines: {', '.join(ENGINES)}")
        s = self.settings()
        # field -> the CLI option that sets it
        options = {"k_train": "k-train", "k_dev": "k-dev", "k_test": "k-test",
                   "embedding_dim": "embedding", "hidden_size": "hidden",
                   "batch_size": "batch-size", "epochs": "epochs", "eval_every": "eval-every"}
        for name, option in options.items():
            ensure(s[name] >= 1, f"--{option} must be >= 1, got {s[name]}")
        for lr in self.lr_values():
            ensure(0 < lr <= MAX_FLOAT32,
                  f"--lr must be > 0 and finite (at most {MAX_FLOAT32:.2e}, the largest "
                  f"float32), got {lr}")
        for wd in self.weight_decay_values():
            ensure(0 <= wd <= MAX_FLOAT32, f"--weight-decay must be >= 0 and finite, got {wd}")
        ensure(self.match_params is None or (isinstance(self.match_params, int)
                                            and self.match_params >= 1),
              f"--match-params must be a whole number >= 1, got {self.match_params!r}")
        ensure(s["clip"] is None or 0 < s["clip"] <= MAX_FLOAT32,
              f"--clip-norm must be > 0 and finite (or 0 for no clipping), got {s['clip']}")
        inits = known_inits()
        ensure(s["init"] in inits,
              f"unknown --init {s['init']!r}; known initialisers: {', '.join(inits)}")
        ensure(s["optimizer"] in ("adam", "sgd"),
              f"--optimizer must be adam or sgd, got {s['optimizer']!r}")
        self._check_budget(s)
        return self

    def lr_values(self) -> tuple[float, ...]:
        """The learning rates of the grid (the protocol's when none is given)."""
        given = _values(self.lr)
        for lr in given:
            ensure(isinstance(lr, (int, float)) and not isinstance(lr, bool),
                  f"--lr must be numbers, got {lr!r}")
        return tuple(float(v) for v in given) or (float(self.settings()["lr"]),)

    def weight_decay_values(self) -> tuple[float, ...]:
        """The weight decays of the grid (the protocol's, else 0, when none is given)."""
        given = _values(self.weight_decay)
        for wd in given:
            ensure(isinstance(wd, (int, float)) and not isinstance(wd, bool),
                  f"--weight-decay must be numbers, got {wd!r}")
        if given:
            return tuple(float(v) for v in given)
        protocol = get_protocol(self.protocol)
        return (float(protocol.train.get("weight_decay", 0.0)),)

    def _check_budget(self, s: dict[str, Any]) -> None:
        """Refuse a grid that cannot fit in memory and warn on one that takes hours,
        before a single spec is built (``--seeds 10**12`` would otherwise fill memory).
        DigitSum's model sizes stand in for every task and the LSTM for a user's model:
        an estimate, to catch grids that are off by orders of magnitude."""
        from rnnlab import budget
        from rnnlab.cells import CELLS
        from rnnlab.engine.population import worker_count

        points = sum(len(self.lengths_for(t)) for t in self.tasks)
        models = len(self.cells) + len(self.models)
        grid = len(self.lr_values()) * len(self.weight_decay_values())
        runs = models * points * self.seeds * grid
        examples = 100 * (s["k_train"] + s["k_dev"] + s["k_test"])
        longest = max(max(self.lengths_for(t)) for t in self.tasks)
        cells = [c if c in CELLS else "lstm" for c in self.cells] or ["lstm"]
        if self.models:
            cells.append("lstm")
        heaviest = max(cells, key=budget.gates)
        model = {"cell": heaviest, "hidden_size": s["hidden_size"],
                 "embedding_dim": s["embedding_dim"], "vocab_size": 10, "num_outputs": 19}
        batch = min(s["batch_size"], 100 * s["k_train"])
        one = budget.run_bytes(model, examples, longest, batch)
        # The fast engine holds every run at once; the loop engine one run at a time.
        need = runs * (one if self.engine == "fast" else 0) + one + runs * budget.RUN_OVERHEAD
        budget.check_fits(f"this grid ({budget.count(runs)} runs of up to length "
                          f"{budget.count(longest)})", need,
                          "ask for fewer or smaller runs")
        work = sum(budget.training_work({**model, "cell": c}, 100 * s["k_train"], n,
                                        s["epochs"]) * self.seeds * grid
                   for c in cells for t in self.tasks for n in self.lengths_for(t))
        # Built-in cells on the fast engine train on the C kernel, on every core.
        on_kernel = self.engine == "fast" and not self.models and all(
            c in CELLS for c in self.cells)
        budget.warn_if_long(f"this grid ({budget.count(runs)} runs)", work,
                            "interrupt with Ctrl-C and rerun the same command to continue",
                            speedup=budget.kernel_speedup(worker_count()) if on_kernel
                            else 1.0)

    def settings(self) -> dict[str, Any]:
        """Every :data:`SETTINGS` value (the protocol's, or this config's override) and
        the protocol's other model and train settings as ``model_extra``/``train_extra``.
        With an ``lr`` grid, ``lr`` here is its first value."""
        protocol = get_protocol(self.protocol)
        sections = {"model": protocol.model, "train": protocol.train, "task": protocol.task}
        resolved: dict[str, Any] = {}
        for name, (section, key) in SETTINGS.items():
            value = getattr(self, name)
            if name == "lr":
                value = _values(value)[0] if _values(value) else None
            if value is None:
                value = sections[section].get(key, _defaults(section).get(key))
            resolved[name] = value
        # One spelling per value, so 5e-3 and 0.005, or 1 and 1.0, hash alike;
        # a clip of 0 means no clipping.
        resolved["lr"] = float(resolved["lr"])
        resolved["clip"] = float(resolved["clip"]) if resolved["clip"] else None
        named = {section: {key for sec, key in SETTINGS.values() if sec == section}
                 | _GRID_KEYS[section] for section in sections}
        for section in ("model", "train"):
            extra = {k: v for k, v in sections[section].items() if k not in named[section]}
            resolved[f"{section}_extra"] = tuple(sorted(extra.items()))
        return resolved

    def specs(self) -> list[RunSpec]:
        """One spec per grid point, in the order model, task, length, lr, weight decay,
        seed (for one task and no grid: cell, length, seed, as before)."""
        from rnnlab.experiments.models import match_hidden, resolve_models
        from rnnlab.tasks import task_class

        s = self.settings()
        out = []
        for entry in resolve_models(self.cells, self.models):
            for task in self.tasks:
                options = tuple(sorted(task_class(task).memory_options.items()))
                base = RunSpec(cell=entry.name, length=0, seed=0, **s, task=task,
                               model_kind=entry.kind, model_source=entry.source_hash,
                               model_ref=entry.ref, task_options=options)
                if self.match_params is not None:
                    hidden = match_hidden(
                        dataclasses.replace(base, length=self.lengths_for(task)[0]),
                        self.match_params)
                    base = dataclasses.replace(base, hidden_size=hidden)
                out += [dataclasses.replace(base, length=n, seed=k, lr=lr, weight_decay=wd)
                        for n in self.lengths_for(task) for lr in self.lr_values()
                        for wd in self.weight_decay_values() for k in range(self.seeds)]
        return out

    def asdict(self) -> dict[str, Any]:
        """The experiment as JSON-ready data, with every setting as it was resolved."""
        d = dataclasses.asdict(self)
        d["cells"], d["tasks"] = list(self.cells), list(self.tasks)
        d["lengths"] = None if self.lengths is None else sorted(self.lengths)
        d["lengths_by_task"] = {t: list(self.lengths_for(t)) for t in self.tasks}
        d["models"] = {name: obj if isinstance(obj, str) else
                       f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
                       for name, obj in self.models}
        d["lr"], d["weight_decay"] = list(self.lr_values()), list(self.weight_decay_values())
        resolved = self.settings()
        for section in ("model", "train"):
            resolved[f"{section}_extra"] = dict(resolved[f"{section}_extra"])
        resolved["lr"], resolved["weight_decay"] = d["lr"], d["weight_decay"]
        d["resolved"] = resolved
        return d
