import math

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task


def test_shapes_ranges_and_determinism():
    task = get_task("burst", n_train=20, n_dev=5, n_test=7)
    splits = task.splits(seed=3)
    assert {k: tuple(v.inputs.shape) for k, v in splits.items()} == {
        "train": (20, 130, 1), "dev": (5, 130, 1), "test": (7, 130, 1)}
    assert splits["train"].targets.shape == (20, 130)
    assert splits["train"].targets.dtype == torch.int64
    x = splits["train"].inputs
    assert x.min() >= 0 and x.max() <= 1
    again = task.splits(seed=3)
    assert torch.equal(again["test"].inputs, splits["test"].inputs)
    assert not torch.equal(task.splits(seed=4)["train"].inputs, splits["train"].inputs)


def test_labels_follow_the_burst():
    task = get_task("burst", n_train=50)
    data = task.splits(0)["train"]
    for x, y in zip(data.inputs[..., 0], data.targets, strict=True):
        nonzero = (x != 0).nonzero().squeeze(1)
        assert len(nonzero) in (9, 10)  # a burst of 10 steps; its first sample may be sin(0)
        last = int(nonzero[-1])
        # 1 up to and including the burst's last step, 0 from the next step on
        assert y[: last + 1].eq(1).all() and y[last + 1:].eq(0).all()
        assert 0 <= int(nonzero[0]) <= 50


def test_hand_checked_burst_values():
    task = get_task("burst", length=20, max_start=0.0, burst_width=4)
    data = task.generate(1, torch.Generator().manual_seed(0))
    expected = [math.sin(math.pi * t / 4) for t in range(4)] + [0.0] * 16
    assert torch.allclose(data.inputs[0, :, 0], torch.tensor(expected), atol=1e-6)
    assert data.targets[0].tolist() == [1] * 4 + [0] * 16


def test_memoryless_baseline_cannot_tell_before_from_after():
    task = get_task("burst")
    splits = task.splits(0)
    baseline = task.memoryless_baseline(splits)
    assert 0.78 < baseline < 0.85  # documented: about 0.81
    assert abs(task.chance - 0.727) < 0.001
    assert baseline > task.chance


@pytest.mark.parametrize("params, word", [
    ({"length": 55}, "length"),
    ({"burst_width": 0}, "burst_width"),
    ({"max_start": -1.0}, "max_start"),
    ({"n_train": 0}, "n_train"),
])
def test_impossible_parameters(params, word):
    with pytest.raises(RnnlabError, match=word):
        get_task("burst", **params)
