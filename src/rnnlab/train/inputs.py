"""What ``Trainer.fit`` takes besides whole tensors: a ``DataLoader``, a device, a
learning-rate scheduler, a loss and extra metrics (contract point 8 of
:mod:`rnnlab.train.trainer`).

A training ``DataLoader`` keeps its own batching, order and collation; the trainer
only counts its batches. To resume bit-identically in the middle of an epoch, the
global torch RNG state and the loader's ``generator`` state are recorded at the
start of each epoch (they decide a shuffled loader's order); a resume restores them,
builds the epoch's iterator again, skips the batches already trained on, then puts
the checkpoint's RNG state back. A ``Dataset`` whose ``__getitem__`` draws random
numbers (augmentation) is outside this: its draws are not replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from rnnlab.errors import RnnlabError, ensure
from rnnlab.tasks.base import SplitData
from rnnlab.train.data import as_split, as_tensor

SCHEDULER_INTERVALS = ("epoch", "step")
Metric = Callable[[Tensor, Tensor], Any]


def batch_of(item: Any, name: str) -> SplitData:
    """One item a loader yields (``(inputs, targets[, lengths])``, a dict with those
    keys, or a ``SplitData``) as a batch."""
    if isinstance(item, dict):
        ensure("inputs" in item and "targets" in item,
              f"{name}: a batch given as a dict needs 'inputs' and 'targets' keys, "
              f"got {sorted(item)}")
        item = (item["inputs"], item["targets"], item.get("lengths"))
    return as_split(item, name)


def to_device(batch: SplitData, device: torch.device | None) -> SplitData:
    """``batch`` with every tensor on ``device`` (unchanged when ``device`` is None)."""
    if device is None:
        return batch
    lengths = None if batch.lengths is None else batch.lengths.to(device)
    return SplitData(batch.inputs.to(device), batch.targets.to(device), lengths)


def loader_split(loader: DataLoader, name: str) -> SplitData:
    """A dev or test loader as one split, read under a forked RNG so that reading it
    draws nothing from the global generators (contract point 1)."""
    with torch.random.fork_rng(devices=[]):
        batches = [batch_of(item, f"{name} batch {i}") for i, item in enumerate(loader)]
    ensure(len(batches) > 0, f"{name}: the DataLoader yields no batches")
    try:
        lengths = [b.lengths for b in batches]
        return SplitData(torch.cat([b.inputs for b in batches]),
                         torch.cat([b.targets for b in batches]),
                         None if lengths[0] is None else torch.cat(lengths))
    except (RuntimeError, TypeError) as err:
        raise RnnlabError(f"{name}: the DataLoader's batches differ in shape, so they do not "
                          f"form one split ({str(err).splitlines()[0]}); pad them to one "
                          "length with a collate_fn, or pass the split as tensors") from None


class LoaderEpochs:
    """A training ``DataLoader`` as the trainer's epochs of batches, replayable on resume."""

    def __init__(self, loader: DataLoader) -> None:
        try:
            self.batches = len(loader)
            self.examples = len(loader.dataset)  # type: ignore[arg-type]
        except TypeError:
            raise RnnlabError("the training DataLoader must have a length (a map-style "
                              "Dataset, or an IterableDataset with __len__), so the trainer "
                              "knows how many steps an epoch has") from None
        ensure(self.batches > 0, "the training DataLoader yields no batches")
        self.loader = loader
        self._iter: Iterator[Any] | None = None

    def targets_sample(self) -> Tensor:
        """The first example's target (to choose the metric) without drawing a number."""
        item = self.loader.dataset[0]
        if isinstance(item, dict):
            return as_tensor(item["targets"])
        return as_tensor(item[1])

    def start_epoch(self) -> dict[str, Tensor | None]:
        """Begin an epoch; return the RNG states its order comes from (for the checkpoint)."""
        generator = self.loader.generator
        record = {"torch": torch.get_rng_state(),
                  "generator": None if generator is None else generator.get_state()}
        self._iter = iter(self.loader)
        return record

    def resume(self, record: dict[str, Tensor | None] | None, done: int) -> None:
        """Stand where an uninterrupted run stood after ``done`` batches of the epoch
        that began with ``record``; the global RNG is left as it was found."""
        if done == 0:
            return
        ensure(record is not None, "cannot resume: the checkpoint was not written by a run "
              "trained from a DataLoader (it holds no loader RNG state)")
        now = torch.get_rng_state()
        torch.set_rng_state(record["torch"])
        if record["generator"] is not None:
            ensure(self.loader.generator is not None, "cannot resume: the run's DataLoader had "
                  "a generator=..., this one has none")
            self.loader.generator.set_state(record["generator"])
        self._iter = iter(self.loader)
        for _ in range(done):
            next(self._iter)
        if done >= self.batches:  # a finished epoch: its sampler's end may draw (RandomSampler)
            for _ in self._iter:
                pass
        torch.set_rng_state(now)

    def rest_of_epoch(self) -> Iterator[SplitData]:
        """The batches of the current epoch not trained on yet."""
        assert self._iter is not None
        iterator, self._iter = self._iter, None
        return (batch_of(item, "train batch") for item in iterator)


def make_scheduler(factory: Callable[[torch.optim.Optimizer], Any] | None,
                   optimizer: torch.optim.Optimizer, interval: str) -> Any:
    """The scheduler ``factory(optimizer)`` builds (``None`` without a factory)."""
    ensure(interval in SCHEDULER_INTERVALS,
          f"scheduler_interval must be 'epoch' or 'step', got {interval!r}")
    if factory is None:
        return None
    scheduler = factory(optimizer)
    ensure(hasattr(scheduler, "step") and hasattr(scheduler, "state_dict"),
          "scheduler must be a function of the optimizer returning an LR scheduler, e.g. "
          "lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10)")
    return scheduler


def is_plateau(scheduler: Any) -> bool:
    """``ReduceLROnPlateau`` steps on a score: after each evaluation, with the dev loss."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
