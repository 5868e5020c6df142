"""DigitSum (seed 004, NNDL chapter 6): remember the first two digits of a long sequence.

Every sequence starts with two digits ``n1, n2`` in 0..9 and continues with zeros up
to ``length``; the label is ``n1 + n2`` (19 classes, 0..18). The 100 pairs are the
*base* examples. Each split holds ``k`` noisy copies of every base example, and each
copy sets one position drawn uniformly from ``2..length-1`` to a digit drawn uniformly
from 0..9 (which may be 0, leaving the copy unchanged). The seed uses ``k=3`` for
train and ``k=1`` for dev and test, so 300/100/100 examples.

The sum is decided by the first two steps, then ``length - 2`` steps of (mostly) zeros
follow, so the model must carry two digits across the whole sequence: the longer the
sequence, the harder it is for a simple recurrent network.

Files are the seed's format: one example per line, ``digits<TAB>label``, the digits
separated by single spaces, e.g. ``3 4 0 0 7 0\t7``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from rnnlab.errors import RnnlabError, ensure
from rnnlab.io import atomic_write_text
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import lookup_accuracy

NUM_DIGITS = 10
NUM_CLASSES = 19
SPLITS = ("train", "dev", "test")
# Mixed into each split's generator so the three splits draw different noise.
_SPLIT_CODE = {"train": 0, "dev": 1, "test": 2}


def generate(length: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``k`` noisy copies of the 100 base examples, in base order ``(n1, n2)`` then copy.

    For each copy the noise position is drawn first, then the digit, as the seed does.
    Returns ``digits (100*k, length)`` and ``labels (100*k,)``, both int64.
    """
    ensure(isinstance(length, int) and length >= 3,
          f"DigitSum length must be at least 3 (two digits to add and one step of noise), "
          f"got {length!r}")
    ensure(isinstance(k, int) and k >= 1,
          f"k (noisy copies per base example) must be at least 1, got {k!r}")
    digits = np.zeros((NUM_DIGITS * NUM_DIGITS * k, length), dtype=np.int64)
    labels = np.zeros(NUM_DIGITS * NUM_DIGITS * k, dtype=np.int64)
    row = 0
    for n1 in range(NUM_DIGITS):
        for n2 in range(NUM_DIGITS):
            for _ in range(k):
                position = int(rng.integers(2, length))
                value = int(rng.integers(0, NUM_DIGITS))
                digits[row, 0], digits[row, 1] = n1, n2
                digits[row, position] = value
                labels[row] = n1 + n2
                row += 1
    return digits, labels


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The generator of one split: seeded by ``(seed, split)`` so splits differ."""
    ensure(int(seed) >= 0, f"the data seed must be a whole number >= 0, got {seed}")
    return np.random.default_rng([int(seed), _SPLIT_CODE[split]])


def write_file(path: str | os.PathLike, split: SplitData) -> Path:
    """Write a split as ``digits<TAB>label`` lines, atomically."""
    lines = []
    lengths = split.lengths.tolist() if split.lengths is not None else None
    rows = zip(split.inputs.tolist(), split.targets.tolist(), strict=True)
    for i, (row, label) in enumerate(rows):
        row = row[: lengths[i]] if lengths is not None else row
        lines.append(" ".join(str(d) for d in row) + "\t" + str(label) + "\n")
    return atomic_write_text(path, "".join(lines))


def parse_digits(text: str, where: str) -> list[int]:
    """Digits 0..9 separated by whitespace; ``where`` names the source in the error."""
    fields = text.split()
    ensure(len(fields) > 0, f"{where}: no digits")
    if not all(f.isdecimal() and int(f) < NUM_DIGITS for f in fields):
        bad = next(f for f in fields if not (f.isdecimal() and int(f) < NUM_DIGITS))
        raise RnnlabError(f"{where}: {bad!r} is not a digit 0-9; expected digits separated "
                          f"by spaces")
    return [int(f) for f in fields]


def read_file(path: str | os.PathLike) -> SplitData:
    """Read ``digits<TAB>label`` lines; a malformed line names the file and line number.

    Blank lines are skipped. Sequences of different lengths are padded with 0 and
    given ``lengths``.
    """
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"no DigitSum data file at {path}")
    rows: list[list[int]] = []
    labels: list[int] = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path} line {number}"
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) != 2:
                    raise RnnlabError(f"{where}: expected 'digits<TAB>label' (one tab), "
                                      f"got {line.strip()[:60]!r}")
                digits = parse_digits(parts[0], where)
                label = parts[1].strip()
                if not (label.isdecimal() and int(label) < NUM_CLASSES):
                    raise RnnlabError(f"{where}: label {label!r} is not a sum 0-18")
                # Two digits to sum is the task: a shorter row cannot be an example.
                ensure(len(digits) >= 2, f"{where}: a DigitSum sequence needs at least two "
                      f"digits (the two to sum), got {len(digits)}")
                ensure(int(label) == digits[0] + digits[1],
                      f"{where}: label {label} is not the sum of the first two digits "
                      f"{digits[0]} + {digits[1]}")
                rows.append(digits)
                labels.append(int(label))
    except UnicodeDecodeError as err:
        raise RnnlabError(f"{path} is not a UTF-8 text file of 'digits<TAB>label' lines "
                          f"({err.reason} at byte {err.start})") from None
    ensure(len(rows) > 0, f"{path} holds no examples")
    return pad(rows, torch.as_tensor(labels, dtype=torch.int64))


def pad(rows: list[list[int]], targets: torch.Tensor) -> SplitData:
    """Stack digit rows; rows of different lengths are zero-padded and get ``lengths``."""
    lengths = [len(r) for r in rows]
    longest = max(lengths)
    inputs = torch.zeros(len(rows), longest, dtype=torch.int64)
    for i, r in enumerate(rows):
        inputs[i, : len(r)] = torch.as_tensor(r, dtype=torch.int64)
    same = all(n == longest for n in lengths)
    return SplitData(inputs, targets, None if same else torch.as_tensor(lengths))


@dataclass
class DigitSum(Task):
    """Classify the sum of the first two digits of a sequence padded with noisy zeros.

    Args:
        length: steps per sequence (at least 3).
        k_train, k_dev, k_test: noisy copies of each of the 100 base examples per split
            (the seed: 3, 1, 1). Larger ``k_dev``/``k_test`` give tighter estimates.
        data_dir: read ``train.txt``, ``dev.txt``, ``test.txt`` from this folder instead
            of generating (the seed's file layout); ``length`` must match the files, and
            the ``k_*`` are then ignored.

    Inputs ``(N, length)`` int64 digits; targets ``(N,)`` int64 sums; metric accuracy.
    """

    name: ClassVar[str] = "digitsum"
    description: ClassVar[str] = ("add the first two digits of a zero-padded sequence "
                                  "(seed 004, NNDL)")
    head: ClassVar[str] = "classify"
    input: ClassVar[str] = "tokens"
    metric: ClassVar[str] = "accuracy"
    memory_axis: ClassVar[str | None] = "length"
    memory_axis_label: ClassVar[str] = "sequence length: the two digits are read at its start"
    memory_lengths: ClassVar[tuple[int, ...]] = (5, 10, 15, 20, 25, 30, 35)

    length: int = 10
    k_train: int = 3
    k_dev: int = 1
    k_test: int = 1
    data_dir: str | None = None

    def __post_init__(self) -> None:
        ensure(isinstance(self.length, int) and self.length >= 3,
              f"DigitSum length must be at least 3 (two digits to add and one step of noise), "
              f"got {self.length!r}")
        for name in ("k_train", "k_dev", "k_test"):
            value = getattr(self, name)
            ensure(isinstance(value, int) and value >= 1,
                  f"{name} (noisy copies per base example) must be at least 1, got {value!r}")

    @property
    def vocab_size(self) -> int:
        return NUM_DIGITS

    @property
    def num_outputs(self) -> int:
        return NUM_CLASSES

    @property
    def chance(self) -> float:
        """The majority-class rate, 0.10: sums are not uniform, 9 takes 10 of the 100 pairs.

        (Guessing uniformly among the 19 classes would give 1/19 = 0.053; always
        answering 9 does better, so that is the honest floor.)
        """
        return 10 / (NUM_DIGITS * NUM_DIGITS)

    def splits(self, seed: int = 0) -> dict[str, SplitData]:
        """Generated from ``seed`` (each split its own stream), or read from ``data_dir``."""
        if self.data_dir is not None:
            return {name: self._read(Path(self.data_dir) / f"{name}.txt") for name in SPLITS}
        ks = {"train": self.k_train, "dev": self.k_dev, "test": self.k_test}
        result = {}
        for name in SPLITS:
            digits, labels = generate(self.length, ks[name], split_rng(seed, name))
            result[name] = SplitData(torch.from_numpy(digits), torch.from_numpy(labels))
        return result

    def _read(self, path: Path) -> SplitData:
        split = read_file(path)
        steps = split.inputs.shape[1]
        ensure(split.lengths is not None or steps == self.length,
              f"{path} holds sequences of length {steps}, but the task has length="
              f"{self.length}; give the files' length (--length {steps})")
        return split

    def save(self, folder: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
        """Write ``train.txt``, ``dev.txt``, ``test.txt`` (the seed's layout) into ``folder``."""
        return {name: write_file(Path(folder) / f"{name}.txt", split)
                for name, split in self.splits(seed).items()}

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        """Test accuracy of "the most frequent train label given the last digit".

        A model without memory sees only the current input; at the end of the
        sequence that is the last digit, which says almost nothing about the sum.
        """
        train, test = splits["train"], splits["test"]
        return lookup_accuracy(_last_token(train), train.targets,
                               _last_token(test), test.targets)


def _last_token(split: SplitData) -> torch.Tensor:
    if split.lengths is None:
        return split.inputs[:, -1]
    return split.inputs[torch.arange(len(split)), split.lengths - 1]
