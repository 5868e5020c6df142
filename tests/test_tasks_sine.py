import math

import pytest
import torch
from torch import nn

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task
from rnnlab.tasks.sine import rollout, rollout_mse


def test_shapes_values_and_shift():
    task = get_task("sine", n_train=8, n_dev=2, n_test=3)
    splits = task.splits(0)
    train = splits["train"]
    assert train.inputs.shape == (8, 49, 1) and train.targets.shape == (8, 49, 1)
    assert train.inputs.abs().max() <= 1
    # the target is the next input
    assert torch.equal(train.targets[:, :-1], train.inputs[:, 1:])
    assert torch.equal(task.splits(0)["test"].inputs, splits["test"].inputs)
    assert not torch.equal(task.splits(1)["test"].inputs, splits["test"].inputs)


def test_hand_checked_samples_and_integer_starts():
    task = get_task("sine", length=4, span=2.0, max_start=1, integer_start=True)
    data = task.generate(2, torch.Generator().manual_seed(0))
    expected = torch.tensor([math.sin(0.5 * k) for k in range(5)])
    assert torch.allclose(data.inputs[0, :, 0], expected[:4], atol=1e-6)
    assert torch.allclose(data.targets[1, :, 0], expected[1:], atol=1e-6)


def test_memoryless_baseline_is_the_rising_or_falling_ambiguity():
    task = get_task("sine")
    baseline = task.memoryless_baseline(task.splits(0))
    dt = 10 / 49
    assert baseline == pytest.approx(math.sin(dt) ** 2 / 2, rel=0.15)
    assert task.chance == 0.5


class _PlusOne(nn.Module):
    """Outputs input + 1 and counts steps in its state: rollout must feed outputs back."""

    def forward(self, x, lengths=None, state=None, return_state=False):
        steps = x.shape[1] + (0 if state is None else state)
        return (x + 1, steps) if return_state else x + 1


def test_rollout_feeds_predictions_back_and_carries_state():
    prime = torch.zeros(2, 3, 1)
    prime[:, -1] = 5.0
    out = rollout(_PlusOne(), prime, steps=4)
    assert out[0, :, 0].tolist() == [6.0, 7.0, 8.0, 9.0]


def test_rollout_mse_compares_each_prediction_with_the_right_target():
    task = get_task("sine", length=6, n_test=2)
    data = task.splits(0)["test"]
    mse, predictions = rollout_mse(_PlusOne(), data, prime=2)
    assert predictions.shape == (2, 5, 1)
    # first prediction follows the 2 primed inputs, then each adds 1 to the last
    expected = data.inputs[:, 1:2] + torch.arange(1, 6).view(1, 5, 1)
    assert torch.allclose(predictions, expected)
    assert mse == pytest.approx(float(((expected - data.targets[:, 1:]) ** 2).mean()))
    with pytest.raises(RnnlabError, match="prime"):
        rollout_mse(_PlusOne(), data, prime=7)


@pytest.mark.parametrize("params, word", [
    ({"length": 1}, "length"),
    ({"span": 0.0}, "span"),
    ({"max_start": -2.0}, "max_start"),
    ({"n_test": 0}, "n_test"),
])
def test_impossible_parameters(params, word):
    with pytest.raises(RnnlabError, match=word):
        get_task("sine", **params)
