import math

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task


def test_layout_by_hand():
    task = get_task("copy", length=3, n_symbols=2, alphabet=4)
    data = task.generate(1, torch.Generator().manual_seed(0))
    s1, s2 = data.inputs[0, :2].tolist()
    assert 1 <= s1 <= 4 and 1 <= s2 <= 4
    # s1 s2, length-1 = 2 blanks, delimiter (5), 2 blanks
    assert data.inputs[0].tolist() == [s1, s2, 0, 0, 5, 0, 0]
    assert data.targets[0].tolist() == [0, 0, 0, 0, 0, s1, s2]


def test_shapes_ranges_determinism():
    task = get_task("copy", length=20, n_train=50, n_dev=2, n_test=3)
    train = task.splits(1)["train"]
    assert train.inputs.shape == (50, 40) and train.targets.shape == (50, 40)
    assert train.inputs.max() <= task.vocab_size - 1 and train.targets.max() <= task.num_outputs - 1
    assert torch.equal(train.targets[:, -10:], train.inputs[:, :10])
    assert torch.equal(task.splits(1)["train"].inputs, train.inputs)
    assert not torch.equal(task.splits(2)["train"].inputs, train.inputs)


def test_memoryless_baselines():
    task = get_task("copy", n_train=500, n_test=200)
    baseline = task.memoryless_baseline(task.splits(0))
    assert baseline == pytest.approx(110 / 120)
    assert task.guess_cross_entropy == pytest.approx(10 * math.log(8) / 120)


def test_recall_accuracy_scores_only_the_recall_steps():
    task = get_task("copy", length=5, n_symbols=3, alphabet=4, n_test=4)
    data = task.splits(0)["test"]
    perfect = torch.nn.functional.one_hot(data.targets, task.num_outputs).float()
    assert task.recall_accuracy(perfect, data.targets) == 1.0
    blanks = torch.nn.functional.one_hot(torch.zeros_like(data.targets), task.num_outputs).float()
    assert task.recall_accuracy(blanks, data.targets) == 0.0


@pytest.mark.parametrize("params, word", [
    ({"length": 0}, "length"), ({"length": -3}, "length"), ({"n_symbols": 0}, "n_symbols"),
    ({"alphabet": 1}, "alphabet"),
])
def test_impossible_parameters(params, word):
    with pytest.raises(RnnlabError, match=word):
        get_task("copy", **params)
