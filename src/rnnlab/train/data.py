"""Turning the user's data into :class:`~rnnlab.tasks.base.SplitData`, and into batches.

The trainer works on whole tensors: recurrent toy tasks fit in memory many times
over, and slicing a tensor by an index is far cheaper per step than a
``DataLoader`` with worker processes and collation. So every accepted form (a
``SplitData``, an ``(inputs, targets[, lengths])`` pair of tensors or NumPy arrays,
or a ``torch.utils.data.Dataset`` of ``(input, target)`` items) is converted once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnlab.errors import RnnlabError, ensure
from rnnlab.tasks.base import SplitData


def as_tensor(values: Any) -> Tensor:
    """A tensor from a tensor, array or nested list: integers become int64, reals float32."""
    if isinstance(values, Tensor):
        tensor = values
    else:
        tensor = torch.as_tensor(np.asarray(values))
    if tensor.is_floating_point():
        return tensor.to(torch.float32) if tensor.dtype == torch.float64 else tensor
    return tensor.to(torch.int64)


def as_split(data: Any, name: str = "data") -> SplitData:
    """Convert any accepted form of a split into :class:`SplitData`, checking shapes."""
    if isinstance(data, SplitData):
        split = data
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        lengths = as_tensor(data[2]) if len(data) == 3 and data[2] is not None else None
        split = SplitData(as_tensor(data[0]), as_tensor(data[1]), lengths)
    elif isinstance(data, torch.utils.data.Dataset):
        split = _from_dataset(data, name)
    else:
        raise RnnlabError(
            f"{name} must be a SplitData, an (inputs, targets) pair of tensors or arrays, "
            f"or a torch Dataset of (input, target) items; got {type(data).__name__}"
        )
    n = split.inputs.shape[0]
    ensure(n > 0, f"{name} is empty")
    ensure(split.targets.shape[0] == n,
          f"{name} has {n} inputs but {split.targets.shape[0]} targets")
    if split.lengths is not None:
        ensure(tuple(split.lengths.shape) == (n,),
              f"{name} lengths must have shape ({n},), got {tuple(split.lengths.shape)}")
        split = SplitData(split.inputs, split.targets, split.lengths.to(torch.int64))
    return split


def _from_dataset(dataset: torch.utils.data.Dataset, name: str) -> SplitData:
    try:
        size = len(dataset)  # type: ignore[arg-type]
    except TypeError as err:
        raise RnnlabError(f"{name}: a Dataset must have a length") from err
    inputs, targets = [], []
    for i in range(size):
        item = dataset[i]
        ensure(isinstance(item, (tuple, list)) and len(item) == 2,
              f"{name}: item {i} of the Dataset is not an (input, target) pair")
        inputs.append(as_tensor(item[0]))
        targets.append(as_tensor(item[1]))
    try:
        return SplitData(torch.stack(inputs), torch.stack(targets))
    except RuntimeError as err:
        raise RnnlabError(f"{name}: Dataset items differ in shape ({err})") from err


def batch_ranges(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, stop)`` slices covering ``n`` items, the last possibly short."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def num_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size
