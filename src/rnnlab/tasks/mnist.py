"""MNIST as a sequence: row by row (seed 002), pixel by pixel, and permuted.

The loader reads the four original IDX files (gzip-compressed or not) from a
folder the user names, checking magic numbers and sizes, so a truncated
download or a wrong file is a clear error instead of garbage digits. Nothing
is downloaded: the folder is the ``data_dir`` field (``--data-dir`` or
``--task-param data_dir=...`` on the command line), else the environment
variable ``RNNLAB_DATA_DIR``, else ``~/.cache/rnnlab/mnist``. The files may sit
in that folder or in its ``mnist/`` subfolder.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from rnnlab.errors import RnnlabError, ensure
from rnnlab.tasks.base import SplitData, Task
from rnnlab.tasks.memoryless import linear_accuracy, lookup_accuracy

MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# IDX magic numbers: two zero bytes, 0x08 (unsigned bytes), then the number of dimensions.
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}
MNIST_SOURCE = (
    "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
)
ENV_VAR = "RNNLAB_DATA_DIR"


def default_data_dir() -> Path:
    """``$RNNLAB_DATA_DIR`` if set, else ``~/.cache/rnnlab/mnist``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rnnlab" / "mnist"


def find_file(data_dir: str | os.PathLike | None, stem: str) -> Path:
    """The path of IDX file ``stem`` (plain or ``.gz``) in ``data_dir`` or ``data_dir/mnist``."""
    folder = Path(data_dir).expanduser() if data_dir else default_data_dir()
    for candidate_dir in (folder, folder / "mnist"):
        for name in (stem, stem + ".gz"):
            if (candidate_dir / name).is_file():
                return candidate_dir / name
    raise RnnlabError(
        f"MNIST file {stem}(.gz) not found in {folder}; download the four IDX files from "
        f"{MNIST_SOURCE} into that folder, or point --data-dir (or {ENV_VAR}) at a folder "
        f"that has them"
    )


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read one IDX file of ``kind`` "images" ``(N, 28, 28)`` or "labels" ``(N,)``, uint8."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise RnnlabError(
            f"MNIST file {path} is corrupt or unreadable ({err}); download it again from "
            f"{MNIST_SOURCE}"
        ) from err
    ndim = 3 if kind == "images" else 1

    def corrupt(why: str) -> RnnlabError:
        return RnnlabError(
            f"MNIST file {path} is not a valid {kind} IDX file ({why}); download it again "
            f"from {MNIST_SOURCE}"
        )

    header = 4 + 4 * ndim
    if len(raw) < header:
        raise corrupt(f"only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _MAGIC[kind]:
        raise corrupt(f"magic number {magic:#010x}, expected {_MAGIC[kind]:#010x}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise corrupt(f"images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise corrupt(f"{len(raw) - header} data bytes, the header promises {expected}")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and data.size and data.max() > 9:
        raise corrupt(f"label {int(data.max())} is not a digit")
    return data


@functools.lru_cache(maxsize=4)
def _load_cached(images: Path, labels: Path, stamp: tuple) -> tuple[Tensor, Tensor]:
    pixels, digits = read_idx(images, "images"), read_idx(labels, "labels")
    if len(pixels) != len(digits):
        raise RnnlabError(
            f"MNIST files {images.name} and {labels.name} disagree: {len(pixels)} images but "
            f"{len(digits)} labels; download both again from {MNIST_SOURCE}"
        )
    return torch.from_numpy(pixels.copy()), torch.from_numpy(digits.astype(np.int64))


def load_mnist(data_dir: str | os.PathLike | None, split: str) -> tuple[Tensor, Tensor]:
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` of ``split`` "train" or "test".

    Results are cached per process (keyed by path, size and modification time),
    so several tasks over the same files decompress them once.
    """
    ensure(split in ("train", "test"), f"MNIST split must be 'train' or 'test', got {split!r}")
    images = find_file(data_dir, MNIST_FILES[(split, "images")])
    labels = find_file(data_dir, MNIST_FILES[(split, "labels")])
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (images, labels))
    return _load_cached(images.resolve(), labels.resolve(), stamp)


@dataclass
class MnistRows(Task):
    """Classify an MNIST digit read as 28 steps of 28 pixels (a row per step).

    Inputs ``(N, 28, 28)`` float32 in [0, 1]; targets ``(N,)`` int64 digits;
    metric: accuracy. ``dev_size`` images of the training file (chosen by the
    split seed) form the dev split, the rest train; test is the 10,000-image
    test file. ``n_train`` / ``n_test`` cap the sizes (for quick runs).
    The memoryless baseline reads only the last step's input (the bottom row,
    nearly always blank) with a linear classifier: 0.121 on the full data.
    Chance is 0.1135, the share of the most frequent digit (1) in the test set.
    """

    name: ClassVar[str] = "mnist-rows"
    description: ClassVar[str] = "classify an MNIST digit read one row per step"
    head: ClassVar[str] = "classify"
    input: ClassVar[str] = "features"
    metric: ClassVar[str] = "accuracy"

    data_dir: str | None = None
    dev_size: int = 5000
    n_train: int | None = None
    n_test: int | None = None

    def __post_init__(self) -> None:
        ensure(self.dev_size >= 0, f"dev_size must be >= 0, got {self.dev_size}")
        for cap in ("n_train", "n_test"):
            value = getattr(self, cap)
            ensure(value is None or value >= 1, f"{cap} must be at least 1 (or unset), got {value}")

    @property
    def input_size(self) -> int:
        return 28

    @property
    def num_outputs(self) -> int:
        return 10

    @property
    def chance(self) -> float:
        return 0.1135

    def as_sequence(self, images: Tensor) -> Tensor:
        """uint8 images ``(N, 28, 28)`` -> float inputs ``(N, L, F)`` for this task."""
        return images.float() / 255.0

    def splits(self, seed: int = 0) -> dict[str, SplitData]:
        images, labels = load_mnist(self.data_dir, "train")
        ensure(self.dev_size < len(images),
              f"dev_size must be smaller than the {len(images)} training images, "
              f"got {self.dev_size}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        dev_index = order[:self.dev_size].sort().values
        train_mask = torch.ones(len(images), dtype=torch.bool)
        train_mask[dev_index] = False
        train_index = train_mask.nonzero().squeeze(1)[:self.n_train]
        test_images, test_labels = load_mnist(self.data_dir, "test")
        return {
            "train": SplitData(self.as_sequence(images[train_index]), labels[train_index]),
            "dev": SplitData(self.as_sequence(images[dev_index]), labels[dev_index]),
            "test": SplitData(self.as_sequence(test_images[:self.n_test]),
                              test_labels[:self.n_test]),
        }

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        train, test = splits["train"], splits["test"]
        return linear_accuracy(train.inputs[:, -1], train.targets,
                               test.inputs[:, -1], test.targets, num_classes=10)


@dataclass
class PixelMnist(MnistRows):
    """MNIST read as 784 steps of one pixel, row after row.

    Inputs ``(N, 784, 1)``; otherwise as :class:`MnistRows`. The memoryless
    baseline looks up the most frequent digit for the last pixel's intensity
    (8 levels); the bottom-right pixel is always blank, so it scores chance,
    0.1135, on the full data.
    """

    name: ClassVar[str] = "pixel-mnist"
    description: ClassVar[str] = "classify an MNIST digit read one pixel per step (784 steps)"

    @property
    def input_size(self) -> int:
        return 1

    def as_sequence(self, images: Tensor) -> Tensor:
        return (images.reshape(len(images), 784, 1).float() / 255.0)

    def memoryless_baseline(self, splits: dict[str, SplitData]) -> float:
        def level(split: SplitData) -> Tensor:
            return (split.inputs[:, -1, 0] * 255).round().long() // 32

        train, test = splits["train"], splits["test"]
        return lookup_accuracy(level(train), train.targets, level(test), test.targets)


@dataclass
class PermutedPixelMnist(PixelMnist):
    """Pixel MNIST with the 784 pixels in a fixed random order.

    The order is drawn once from ``permutation_seed`` (not the split seed), so
    every split and every run of the same task sees the same permutation. It
    spreads each stroke across the whole sequence, so a model must carry
    information over hundreds of steps. The memoryless baseline (lookup on the
    last pixel's intensity) scores 0.1135, chance, with the default permutation,
    whose last pixel (row 21, column 0) lies on the always-blank border.
    """

    name: ClassVar[str] = "permuted-pixel-mnist"
    description: ClassVar[str] = "pixel MNIST with a fixed, seeded permutation of the pixels"

    permutation_seed: int = 0

    @property
    def permutation(self) -> Tensor:
        return torch.randperm(784, generator=torch.Generator().manual_seed(self.permutation_seed))

    def as_sequence(self, images: Tensor) -> Tensor:
        return super().as_sequence(images)[:, self.permutation]
