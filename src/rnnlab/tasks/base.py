"""What every task provides: data splits, the shape of its data (:class:`TaskSpec`), a
metric, chance and a memoryless baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from rnnlab.errors import ensure

# The target of a step that is not scored (torch's cross_entropy ignore_index).
IGNORE = -100


@dataclass
class SplitData:
    """One split of a task, everything as tensors.

    ``inputs`` is ``(N, L)`` int64 tokens or ``(N, L, F)`` float32 features;
    ``targets`` is ``(N,)`` int64 (classify), ``(N, L)`` int64 (tag; -100 marks a
    step that is not scored), ``(N, L, F)`` float32 (regress) or ``(N, F)`` float32
    (regress-last); ``lengths`` is ``(N,)`` int64 or ``None``
    when every sequence is full length.
    """

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def subset(self, index: Tensor) -> SplitData:
        lengths = None if self.lengths is None else self.lengths[index]
        return SplitData(self.inputs[index], self.targets[index], lengths)


@dataclass(frozen=True)
class TaskSpec:
    """What a task's data looks like: all a model builder needs to know about a task.

    ``input`` is ``"tokens"`` (then ``vocab_size`` ids) or ``"features"`` (then
    ``input_size`` reals per step); ``head`` is what the model emits
    (``"classify"``, ``"tag"``, ``"regress"``, ``"regress-last"``), ``num_outputs`` classes
    or values. :func:`rnnlab.models.model_config_for` turns it into a model config, so
    tasks never import models.
    """

    input: str
    head: str
    num_outputs: int
    vocab_size: int | None = None
    input_size: int | None = None


@dataclass
class Task:
    """Base class of a task. Subclasses set the class attributes and implement
    :meth:`splits` and :meth:`memoryless_baseline`; parameters are dataclass fields."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    head: ClassVar[str] = "classify"  # "classify" | "tag" | "regress" | "regress-last"
    input: ClassVar[str] = "tokens"  # "tokens" | "features"
    metric: ClassVar[str] = "accuracy"  # "accuracy" | "mse"

    def check_split_sizes(self, names: tuple[str, ...] = ("n_train", "n_dev", "n_test")) -> None:
        """Raise :class:`RnnlabError` unless every split size field is at least 1."""
        for name in names:
            size = getattr(self, name)
            ensure(size >= 1, f"{name} must be at least 1, got {size}")

    # --- sizes -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int | None:
        return None

    @property
    def input_size(self) -> int | None:
        return None

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    @property
    def spec(self) -> TaskSpec:
        """The shape of this task's data (see :class:`TaskSpec`)."""
        return TaskSpec(input=self.input, head=self.head, num_outputs=self.num_outputs,
                        vocab_size=self.vocab_size if self.input == "tokens" else None,
                        input_size=self.input_size if self.input == "features" else None)

    @property
    def chance(self) -> float:
        """The metric of a model that knows nothing about the input."""
        raise NotImplementedError

    # --- data --------------------------------------------------------------------------
    def splits(self, seed: int = 0) -> dict[str, SplitData]:
        """``{"train": ..., "dev": ..., "test": ...}``, determined by ``seed``.

        For a synthetic task (one with :meth:`generate` and ``n_train``, ``n_dev``,
        ``n_test`` fields): each split drawn from its own generator, seeded
        ``3 * seed + k`` for train, dev and test (k = 0, 1, 2), so no split shares a
        random stream with another and a seed's splits never change when sizes do.
        """
        return {name: self.generate(getattr(self, f"n_{name}"),
                                    torch.Generator().manual_seed(3 * seed + k))
                for k, name in enumerate(("train", "dev", "test"))}

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        """``n`` fresh examples drawn from ``generator`` (a synthetic task's data)."""
        raise NotImplementedError

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        """The test metric of the best model that sees only the current input."""
        raise NotImplementedError

    # --- the memory experiment -----------------------------------------------------------
    # Class-level, so a user's own subclass declares them the same way a built-in does.
    memory_axis: ClassVar[str | None] = None  # the field --lengths walks; None: not a suite task
    memory_axis_label: ClassVar[str] = ""  # what one step along the axis means, in words
    memory_lengths: ClassVar[tuple[int, ...]] = ()  # the suite's default values of the axis
    # Options the memory experiment gives the task (the suite-sized version of it, so the
    # whole suite trains in minutes); part of every run's hash.
    memory_options: ClassVar[Mapping[str, Any]] = {}

    @property
    def score_label(self) -> str:
        """What :meth:`score` measures, in words (for ``rnnlab tasks`` and the report)."""
        if self.metric == "accuracy":
            return "accuracy"
        return "1 - MSE / MSE of always answering the mean"

    def score(self, metrics: Mapping[str, float] | float) -> float:
        """The task's metric as a score in [0, 1], 1 perfect, so tasks share one scale.

        ``metrics`` is the metric's value or a dict holding it under :attr:`metric`
        (what ``Trainer.evaluate`` returns). Accuracy is its own score. An MSE task
        scores ``1 - mse / chance``, where its :attr:`chance` is the MSE of always
        answering the mean, so that answer scores 0; a model worse than it is
        clipped to 0 rather than going negative.
        """
        value = float(metrics[self.metric] if isinstance(metrics, Mapping) else metrics)
        if self.metric == "accuracy":
            return value
        return min(1.0, max(0.0, 1.0 - value / self.chance))

    @property
    def chance_score(self) -> float:
        """:attr:`chance` on the score's scale (an accuracy task: the chance accuracy)."""
        return self.score(self.chance)

    def memoryless_score(self, splits: dict[str, SplitData]) -> float:
        """:meth:`memoryless_baseline` on the score's scale."""
        return self.score(self.memoryless_baseline(splits))

    def describe_memory(self) -> dict[str, Any]:
        """The uniform description the memory experiment reads: axis, score and chance."""
        return {"name": self.name, "axis": self.memory_axis, "axis_label": self.memory_axis_label,
                "lengths": list(self.memory_lengths), "options": dict(self.memory_options),
                "metric": self.metric,
                "score": self.score_label, "chance": self.chance,
                "chance_score": self.chance_score}

