"""Scoring and prediction without gradients, in eval mode (contract point 5).

Functions of a model, data and the :class:`TrainConfig` (batch size, loss, metric,
chunk length), so ``Trainer.evaluate``/``predict`` and anything else score alike.
Every function switches the model to eval mode (dropout off) and back to the mode it
found it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.errors import ensure
from rnnlab.tasks.base import SplitData
from rnnlab.train import stateful
from rnnlab.train.config import TrainConfig
from rnnlab.train.data import as_split, as_tensor, batch_ranges
from rnnlab.train.scoring import Scores, auto_metric, forward, loss_kind


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no gradient inside; the model's own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def metric_for(config: TrainConfig, split: SplitData) -> str:
    """The metric a config names, ``auto`` resolved from the targets."""
    return config.metric if config.metric != "auto" else auto_metric(split.targets)


def evaluate(model: nn.Module, data: Any, config: TrainConfig, *,
             device: torch.device | None = None, loss_fn: Callable | None = None,
             metrics: dict[str, Callable] | None = None) -> dict[str, float]:
    """``{"loss": mean loss per term, metric: value}`` over a whole split.

    Stateful training (``config.tbptt``) scores each stream from a fresh state, chunk
    after chunk with the state carried, and adds ``<metric>_fresh``: the same with a
    fresh state for every chunk, which shows what the carried state is worth.
    ``device``: where the batches go (the model's device). ``loss_fn(output, targets)``
    replaces the loss (its batch means averaged, weighted by batch size); each of
    ``metrics`` (``{name: fn(output, targets)}``) adds ``name``, computed once over
    the whole split's outputs.
    """
    split = as_split(data, "data")
    if loss_fn is not None or metrics or device is not None:
        return _evaluate_with(model, split, config, device, loss_fn, metrics or {})
    metric = metric_for(config, split)
    kind = loss_kind(config.loss, split.targets)
    scores = Scores(kind, metric)
    with eval_mode(model):
        if config.tbptt is not None:
            fresh = Scores(kind, metric)
            for a, b in batch_ranges(len(split), config.eval_batch_size):
                x, y = split.inputs[a:b], split.targets[a:b]
                scores.add(stateful.run_stream(model, x, config.tbptt)[0], y)
                fresh.add(stateful.run_stream(model, x, config.tbptt, carry=False)[0], y)
            return {**scores.result(), f"{metric}_fresh": fresh.result()[metric]}
        for start, stop in batch_ranges(len(split), config.eval_batch_size):
            lengths = None if split.lengths is None else split.lengths[start:stop]
            scores.add(forward(model, split.inputs[start:stop], lengths),
                       split.targets[start:stop], lengths)
    return scores.result()


def _evaluate_with(model: nn.Module, split: SplitData, config: TrainConfig,
                   device: torch.device | None, loss_fn: Callable | None,
                   metrics: dict[str, Callable]) -> dict[str, float]:
    """:func:`evaluate` with a device, a loss callable or extra metrics."""
    ensure(config.tbptt is None, "a loss or metric callable or a device is not supported with "
          "stateful training (tbptt)")
    metric = metric_for(config, split)
    scores = Scores(loss_kind(config.loss, split.targets), metric)
    loss_total, outputs = 0.0, []
    with eval_mode(model):
        for start, stop in batch_ranges(len(split), config.eval_batch_size):
            batch = split.subset(torch.arange(start, stop))
            if device is not None:
                lengths = None if batch.lengths is None else batch.lengths.to(device)
                batch = SplitData(batch.inputs.to(device), batch.targets.to(device), lengths)
            output = forward(model, batch.inputs, batch.lengths)
            scores.add(output, batch.targets, batch.lengths)
            if loss_fn is not None:
                loss_total += float(loss_fn(output, batch.targets)) * (stop - start)
            if metrics:
                outputs.append(output.cpu())
    result = scores.result()
    if loss_fn is not None:
        result["loss"] = loss_total / len(split)
    if metrics:
        output, targets = torch.cat(outputs), split.targets.cpu()
        for name, fn in metrics.items():
            result[name] = float(fn(output, targets))
    return result


def predict(model: nn.Module, inputs: Any, config: TrainConfig, lengths: Any = None,
            device: torch.device | None = None) -> Tensor:
    """The model's outputs (logits or values) for ``inputs``, in batches (computed on
    ``device`` when given, returned on the CPU then)."""
    x = as_tensor(inputs)
    lens = None if lengths is None else as_tensor(lengths)
    with eval_mode(model):
        if device is not None:
            return torch.cat([
                forward(model, x[a:b].to(device),
                        None if lens is None else lens[a:b].to(device)).cpu()
                for a, b in batch_ranges(x.shape[0], config.eval_batch_size)])
        return torch.cat([
            forward(model, x[start:stop], None if lens is None else lens[start:stop])
            for start, stop in batch_ranges(x.shape[0], config.eval_batch_size)])


def predict_stream(model: nn.Module, inputs: Any, chunk: int, state: Any = None,
                   carry: bool = True) -> tuple[Tensor, Any]:
    """Outputs along streams ``(S, T, ...)``, ``chunk`` steps per call, from ``state``;
    returns them and the final state (see :func:`rnnlab.train.stateful.run_stream`)."""
    with eval_mode(model):
        return stateful.run_stream(model, as_tensor(inputs), chunk, state, carry)
