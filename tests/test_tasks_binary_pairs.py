import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task
from rnnlab.tasks.binary_pairs import pair_labels


def test_the_seed_example():
    bits = torch.tensor([[0, 0, 1, 0, 1, 1]])
    assert pair_labels(bits).tolist() == [[0, 0, 1, 2, 1, 3]]


def test_longer_lag_by_hand():
    bits = torch.tensor([[1, 0, 0, 1]])
    assert pair_labels(bits, lag=2).tolist() == [[1, 0, 2, 1]]


def test_shapes_ranges_determinism():
    task = get_task("binary-pairs", n_train=30, n_dev=3, n_test=4, length=12)
    splits = task.splits(5)
    train = splits["train"]
    assert train.inputs.shape == (30, 12, 1) and train.inputs.dtype == torch.float32
    assert train.targets.shape == (30, 12) and train.targets.dtype == torch.int64
    assert set(train.inputs.unique().tolist()) == {0.0, 1.0}
    assert set(train.targets.unique().tolist()) == {0, 1, 2, 3}
    assert torch.equal(pair_labels(train.inputs[..., 0].long()), train.targets)
    assert torch.equal(task.splits(5)["train"].inputs, train.inputs)
    assert not torch.equal(task.splits(6)["train"].inputs, train.inputs)


def test_memoryless_baseline_knows_only_the_current_bit():
    task = get_task("binary-pairs")
    baseline = task.memoryless_baseline(task.splits(0))
    assert baseline == pytest.approx((1 + 49 / 2) / 50, abs=0.01)
    assert task.chance == pytest.approx(0.255)


@pytest.mark.parametrize("params, word", [
    ({"length": 1}, "length"), ({"lag": 0}, "lag"), ({"lag": -1}, "lag"),
    ({"length": 3, "lag": 3}, "length"), ({"n_train": 0}, "n_train"),
])
def test_impossible_parameters(params, word):
    with pytest.raises(RnnlabError, match=word):
        get_task("binary-pairs", **params)
