"""The memory experiment's grid: what is asked (:class:`MemoryConfig`) and what one
run is (:class:`RunSpec`).

A run is identified by the hash of its :class:`RunSpec` (everything that can
change its result, nothing that cannot: not the engine, not the threshold), so a
rerun trains only the specs whose hash has no row yet and a changed option
retrains only what it changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rnnlab.errors import check
from rnnlab.protocols import get_protocol

TASK = "digitsum"
DEFAULT_CELLS: tuple[str, ...] = ("srn", "residual-srn", "lstm", "gru")
DEFAULT_LENGTHS: tuple[int, ...] = (5, 10, 15, 20, 25, 30, 35)
DEFAULT_SEEDS = 3
DEFAULT_THRESHOLD = 0.9
# Part of every run's hash: bump it when the meaning of a spec field changes, so
# old rows are no longer taken for results of the new definition.
SPEC_VERSION = 1
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

    def asdict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_extra"], d["train_extra"] = dict(self.model_extra), dict(self.train_extra)
        return d

    @property
    def config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the spec as canonical JSON."""
        payload = {"version": SPEC_VERSION, **self.asdict()}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def run_id(self) -> str:
        """A folder name a person can read and that still cannot collide."""
        return f"{self.cell}-L{self.length}-s{self.seed}-{self.config_hash[:8]}"


def known_cells() -> list[str]:
    """Cell names the cell registry knows (``rnnlab.cells.CELLS``)."""
    from rnnlab.cells import CELLS

    return list(CELLS)


def known_inits() -> list[str]:
    """Initialiser names the cells accept (``rnnlab.cells.init_names``)."""
    from rnnlab.cells import init_names

    return list(init_names())


@dataclass(frozen=True)
class MemoryConfig:
    """The whole memory experiment.

    ``seeds`` is how many seeds (``0 .. seeds-1``) each cell and length gets. The
    hyper-parameter fields default to ``None``, meaning "whatever ``protocol``
    says"; a value given overrides the protocol. ``engine`` chooses how runs are
    trained and never changes a result beyond float tolerance, so it is not part
    of any run's hash.
    """

    cells: tuple[str, ...] = DEFAULT_CELLS
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
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
    lr: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    shuffle: bool | None = None
    eval_every: int | None = None
    clip: float | None = None

    def __post_init__(self) -> None:
        # Lists from Python callers become tuples so the config stays hashable.
        object.__setattr__(self, "cells", tuple(self.cells))
        object.__setattr__(self, "lengths", tuple(self.lengths))

    def validate(self) -> MemoryConfig:
        """Raise :class:`RnnlabError` with one sentence for the first bad value."""
        from rnnlab.experiments.runners import ENGINES

        check(len(self.cells) > 0, "--cells needs at least one cell name")
        known = known_cells()
        for cell in self.cells:
            check(cell in known,
                  f"unknown cell {cell!r} in --cells; known cells: {', '.join(known)}")
        check(len(set(self.cells)) == len(self.cells), "--cells lists a cell twice")
        check(len(self.lengths) > 0, "--lengths needs at least one length")
        for length in self.lengths:
            check(isinstance(length, int) and length >= 3,
                  f"every length must be an integer >= 3 (two digits to sum and at least "
                  f"one step of distraction), got {length!r} in --lengths")
        check(len(set(self.lengths)) == len(self.lengths), "--lengths lists a length twice")
        check(isinstance(self.seeds, int) and 1 <= self.seeds <= MAX_SEEDS,
              f"--seeds must be a whole number >= 1 and at most {MAX_SEEDS} (seeds index "
              f"the random generators), got {self.seeds!r}")
        check(isinstance(self.threshold, (int, float)) and 0.0 < self.threshold <= 1.0,
              f"--threshold must be in (0, 1] (an accuracy), got {self.threshold!r}")
        get_protocol(self.protocol)
        check(self.engine in ENGINES,
              f"unknown engine {self.engine!r}; known engines: {', '.join(ENGINES)}")
        s = self.settings()
        # field -> the CLI option that sets it
        options = {"k_train": "k-train", "k_dev": "k-dev", "k_test": "k-test",
                   "embedding_dim": "embedding", "hidden_size": "hidden",
                   "batch_size": "batch-size", "epochs": "epochs", "eval_every": "eval-every"}
        for name, option in options.items():
            check(s[name] >= 1, f"--{option} must be >= 1, got {s[name]}")
        check(0 < s["lr"] <= MAX_FLOAT32,
              f"--lr must be > 0 and finite (at most {MAX_FLOAT32:.2e}, the largest float32), "
              f"got {s['lr']}")
        check(s["clip"] is None or 0 < s["clip"] <= MAX_FLOAT32,
              f"--clip must be > 0 and finite (or 0 for no clipping), got {s['clip']}")
        inits = known_inits()
        check(s["init"] in inits,
              f"unknown --init {s['init']!r}; known initialisers: {', '.join(inits)}")
        check(s["optimizer"] in ("adam", "sgd"),
              f"--optimizer must be adam or sgd, got {s['optimizer']!r}")
        self._check_budget(s)
        return self

    def _check_budget(self, s: dict[str, Any]) -> None:
        """Refuse a grid that cannot fit in memory and warn on one that takes hours,
        before a single spec is built (``--seeds 10**12`` would otherwise fill memory)."""
        from rnnlab import budget

        runs = len(self.cells) * len(self.lengths) * self.seeds
        examples = 100 * (s["k_train"] + s["k_dev"] + s["k_test"])
        longest = max(self.lengths)
        heaviest = max(self.cells, key=budget.gates)
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
                                        s["epochs"]) * self.seeds
                   for c in self.cells for n in self.lengths)
        budget.warn_if_long(f"this grid ({budget.count(runs)} runs)", work,
                            "interrupt with Ctrl-C and rerun the same command to continue")

    def settings(self) -> dict[str, Any]:
        """Every :data:`SETTINGS` value (the protocol's, or this config's override) and
        the protocol's other model and train settings as ``model_extra``/``train_extra``."""
        protocol = get_protocol(self.protocol)
        sections = {"model": protocol.model, "train": protocol.train, "task": protocol.task}
        resolved: dict[str, Any] = {}
        for name, (section, key) in SETTINGS.items():
            value = getattr(self, name)
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
        """One spec per grid point, in the order cell, length, seed."""
        s = self.settings()
        return [RunSpec(cell=c, length=n, seed=k, **s)
                for c in self.cells for n in sorted(self.lengths) for k in range(self.seeds)]

    def asdict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cells"], d["lengths"] = list(self.cells), sorted(self.lengths)
        resolved = self.settings()
        for section in ("model", "train"):
            resolved[f"{section}_extra"] = dict(resolved[f"{section}_extra"])
        d["resolved"] = resolved
        return d
