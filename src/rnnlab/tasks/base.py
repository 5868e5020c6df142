"""What every task provides: data splits, the shape of its data (:class:`TaskSpec`), a
metric, chance and a memoryless baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from rnnlab.errors import check


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
            check(size >= 1, f"{name} must be at least 1, got {size}")

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
        """``{"train": ..., "dev": ..., "test": ...}``, determined by ``seed``."""
        raise NotImplementedError

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        """The test metric of the best model that sees only the current input."""
        raise NotImplementedError
