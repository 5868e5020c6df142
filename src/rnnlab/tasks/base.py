"""What every task provides: data splits, a metric, chance and a memoryless baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
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


@dataclass
class Task:
    """Base class of a task. Subclasses set the class attributes and implement
    :meth:`splits` and :meth:`memoryless_baseline`; parameters are dataclass fields."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    head: ClassVar[str] = "classify"  # "classify" | "tag" | "regress" | "regress-last"
    input: ClassVar[str] = "tokens"  # "tokens" | "features"
    metric: ClassVar[str] = "accuracy"  # "accuracy" | "mse"
    seed_doc: ClassVar[str] = ""  # which seed document the task comes from

    params: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

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
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

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

    # --- model -------------------------------------------------------------------------
    def model_config(self, **overrides: Any):
        """A :class:`rnnlab.models.ModelConfig` shaped for this task."""
        from rnnlab.models import ModelConfig

        base: dict[str, Any] = {
            "head": self.head,
            "input": self.input,
            "num_outputs": self.num_outputs,
        }
        if self.input == "tokens":
            base["vocab_size"] = self.vocab_size
        else:
            base["input_size"] = self.input_size
        base.update(overrides)
        return ModelConfig(**base)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "head": self.head, "input": self.input,
                "metric": self.metric, "description": self.description}


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Fraction of correct argmax predictions (works for (N,C) and (N,L,C))."""
    return float((logits.argmax(-1) == targets).float().mean())


def as_long(values) -> Tensor:
    return torch.as_tensor(values, dtype=torch.int64)
