"""Memoryless baselines: the best predictor that sees only the current input.

A task's memoryless baseline answers "how well can you do with no memory at
all?". It is fitted on the training split and scored on the test split, so it is
a measured number, not a formula; a trained recurrent model is only interesting
when it beats it.

Two fitters cover every task: a lookup table from a discrete key of the current
input to the most frequent target (classification) and a least-squares linear
map from the current input's features (regression, or classification through
one-hot targets).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.tasks.base import IGNORE, SplitData


def lookup_accuracy(train_keys: Tensor, train_targets: Tensor,
                    test_keys: Tensor, test_targets: Tensor) -> float:
    """Accuracy on test of "predict the most frequent train target for this key".

    ``*_keys`` are int64 tensors of the same shape as their targets; a key never
    seen in training gets the overall most frequent target.
    """
    train_keys, train_targets = train_keys.reshape(-1), train_targets.reshape(-1)
    test_keys, test_targets = test_keys.reshape(-1), test_targets.reshape(-1)
    n_keys = int(max(train_keys.max(), test_keys.max())) + 1
    n_classes = int(max(train_targets.max(), test_targets.max())) + 1
    counts = torch.zeros(n_keys, n_classes, dtype=torch.int64)
    counts.index_put_((train_keys, train_targets), torch.ones_like(train_keys), accumulate=True)
    table = counts.argmax(1)
    unseen = counts.sum(1) == 0
    table[unseen] = int(torch.bincount(train_targets, minlength=n_classes).argmax())
    return float((table[test_keys] == test_targets).float().mean())


def scored_steps_lookup(splits: dict[str, SplitData]) -> float:
    """:func:`lookup_accuracy` of "current token -> most frequent target" on the steps a
    per-step task scores (target not -100): fitted on train, scored on test."""
    train, test = splits["train"], splits["test"]
    fit, score = train.targets != IGNORE, test.targets != IGNORE
    return lookup_accuracy(train.inputs[fit], train.targets[fit],
                           test.inputs[score], test.targets[score])


def _design(features: Tensor) -> Tensor:
    features = features.reshape(features.shape[0], -1).double()
    return torch.cat([features, torch.ones(features.shape[0], 1, dtype=features.dtype)], 1)


def linear_mse(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> float:
    """Test MSE of the least-squares affine map from ``x`` (rows) to ``y`` (rows)."""
    targets = train_y.reshape(len(train_y), -1).double()
    weights = torch.linalg.lstsq(_design(train_x), targets).solution
    prediction = _design(test_x) @ weights
    return float(((prediction - test_y.reshape(len(test_y), -1).double()) ** 2).mean())


def linear_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                    num_classes: int, ridge: float = 1e-3) -> float:
    """Test accuracy of a ridge least-squares linear classifier on one-hot targets.

    Closed form, so it is instant and deterministic; a logistic regression would
    do a little better, which makes this a conservative (low) baseline.
    """
    design = _design(train_x)
    onehot = torch.nn.functional.one_hot(train_y, num_classes).double()
    gram = design.T @ design + ridge * len(design) * torch.eye(design.shape[1], dtype=design.dtype)
    weights = torch.linalg.solve(gram, design.T @ onehot)
    return float(((_design(test_x) @ weights).argmax(1) == test_y).float().mean())
