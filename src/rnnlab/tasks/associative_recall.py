"""Multi-query associative recall (as in Zoology's MQAR, Arora et al., 2023, and MAD's
in-context recall): bind keys to values, then answer queries of the keys.

Tokens: 0 is the filler, ``1..K`` are keys, ``K+1..K+V`` are values. A sequence of
``length`` steps opens with ``n_pairs`` key-value pairs (distinct keys, distinct
values, drawn afresh for every sequence), then the filler, in which each key appears
once more as a query, in random order at random distinct steps. At a query the target
is the index ``0..V-1`` of the value bound to that key; every other step is -100 (not
scored)::

    input : k1 v1 k2 v2  0 k2 0 0 k1 0
    target: -  -  -  -   - v2 - - v1 -        (- is -100: not scored)

The binding changes from sequence to sequence, so no fixed weights can hold it: the
model must store what it read and look it up. The memory axis is ``length``, with the
number of pairs fixed (``n_pairs``, stated with every result); the queries are spread
uniformly over the ``length - 2 * n_pairs`` steps after the pairs, so the mean distance
between a pair and its query grows with the length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from rnnlab.errors import ensure
from rnnlab.tasks.base import IGNORE, SplitData, Task
from rnnlab.tasks.memoryless import scored_steps_lookup


def _draw_distinct(n: int, pool: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, count)`` int64: ``count`` distinct values of ``0..pool-1`` per row, in random order."""
    return torch.rand(n, pool, generator=generator).argsort(dim=1)[:, :count]


@dataclass
class AssociativeRecall(Task):
    """Per-step tagging: at each query key, name the value it was paired with.

    Inputs ``(N, length)`` int64 tokens in ``[0, K + V]``; targets ``(N, length)``
    int64, a value index ``0..V-1`` at the ``n_pairs`` query steps and -100 elsewhere;
    metric and score: accuracy on the query steps. Each query's value is uniform over
    the V values, so chance (the best constant answer) is ``1/V``; the memoryless
    baseline, a lookup from the current token (the query key) to the most frequent
    value, cannot know this sequence's binding and lands at chance too.
    """

    name: ClassVar[str] = "associative-recall"
    description: ClassVar[str] = "key-value pairs, then queries of the keys (Zoology MQAR)"
    head: ClassVar[str] = "tag"
    input: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    memory_axis: ClassVar[str | None] = "length"
    memory_axis_label: ClassVar[str] = ("sequence length, with n_pairs key-value pairs "
                                        "(4 by default) then one query per key")
    memory_lengths: ClassVar[tuple[int, ...]] = (12, 24, 48)

    length: int = 32
    n_pairs: int = 4
    n_keys: int = 16
    n_values: int = 16
    n_train: int = 10000
    n_dev: int = 1000
    n_test: int = 1000

    def __post_init__(self) -> None:
        ensure(self.n_pairs >= 1, f"n_pairs must be at least 1, got {self.n_pairs}")
        ensure(self.n_keys >= self.n_pairs and self.n_values >= self.n_pairs,
              f"n_keys ({self.n_keys}) and n_values ({self.n_values}) must each be at least "
              f"n_pairs ({self.n_pairs}): keys and values are distinct within a sequence")
        ensure(self.n_values >= 2,
              f"n_values must be at least 2 so there is something to recall, got {self.n_values}")
        ensure(self.length >= 3 * self.n_pairs,
              f"length ({self.length}) must be at least 3 * n_pairs ({3 * self.n_pairs}): "
              "the pairs take 2 steps each and every key is queried once after them")
        self.check_split_sizes()

    @property
    def vocab_size(self) -> int:
        return 1 + self.n_keys + self.n_values

    @property
    def num_outputs(self) -> int:
        return self.n_values

    @property
    def chance(self) -> float:
        """Query accuracy of the best constant answer: each value has probability 1/V."""
        return 1.0 / self.n_values

    def generate(self, n: int, generator: torch.Generator) -> SplitData:
        pairs = self.n_pairs
        keys = _draw_distinct(n, self.n_keys, pairs, generator) + 1
        values = _draw_distinct(n, self.n_values, pairs, generator)
        inputs = torch.zeros(n, self.length, dtype=torch.int64)
        inputs[:, 0:2 * pairs:2] = keys
        inputs[:, 1:2 * pairs:2] = values + 1 + self.n_keys
        order = _draw_distinct(n, pairs, pairs, generator)  # which pair each query asks
        steps = _draw_distinct(n, self.length - 2 * pairs, pairs, generator) + 2 * pairs
        targets = torch.full((n, self.length), IGNORE, dtype=torch.int64)
        inputs.scatter_(1, steps, keys.gather(1, order))
        targets.scatter_(1, steps, values.gather(1, order))
        return SplitData(inputs, targets)

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        """Query accuracy of "current token -> most frequent target", fitted on the
        train split's query steps and scored on the test split's."""
        return scored_steps_lookup(splits)
