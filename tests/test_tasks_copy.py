import math

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, Trainer


class FixedLogits(torch.nn.Module):
    """A 'model' that returns the logits it was built with, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits[: x.shape[0]]


def test_layout_by_hand():
    task = get_task("copy", length=3, n_symbols=2, alphabet=4)
    data = task.generate(1, torch.Generator().manual_seed(0))
    s1, s2 = data.inputs[0, :2].tolist()
    assert 1 <= s1 <= 4 and 1 <= s2 <= 4
    # s1 s2, length-1 = 2 blanks, delimiter (5), 2 blanks
    assert data.inputs[0].tolist() == [s1, s2, 0, 0, 5, 0, 0]
    # only the recall steps are scored; the rest is torch's ignore_index
    assert data.targets[0].tolist() == [-100, -100, -100, -100, -100, s1, s2]


def test_shapes_ranges_determinism():
    task = get_task("copy", length=20, n_train=50, n_dev=2, n_test=3)
    train = task.splits(1)["train"]
    assert train.inputs.shape == (50, 40) and train.targets.shape == (50, 40)
    assert train.inputs.max() <= task.vocab_size - 1 and train.targets.max() <= task.num_outputs - 1
    assert torch.equal(train.targets[:, -10:], train.inputs[:, :10])
    assert train.targets[:, -10:].min() >= 1 and train.targets[:, :-10].eq(-100).all()
    assert torch.equal(task.splits(1)["train"].inputs, train.inputs)
    assert not torch.equal(task.splits(2)["train"].inputs, train.inputs)


def test_chance_and_memoryless_baseline_are_on_the_recall_steps():
    task = get_task("copy", n_train=500, n_test=2000)
    assert task.chance == pytest.approx(1 / 8)
    baseline = task.memoryless_baseline(task.splits(0))
    # a blank is the only input on recall steps, so the lookup names one symbol:
    # right about 1/8 of the time (2000 x 10 test symbols), not 110/120 as with blanks
    assert baseline == pytest.approx(1 / 8, abs=0.01)
    assert task.guess_cross_entropy == pytest.approx(math.log(8))
    assert task.all_steps_guess_cross_entropy == pytest.approx(10 * math.log(8) / 120)


def test_trainer_scores_loss_and_accuracy_on_the_recall_steps_only():
    task = get_task("copy", length=6, n_symbols=3, alphabet=4, n_test=50)
    test = task.splits(0)["test"]
    recalled = test.targets.clamp(min=0)  # the symbols on recall steps, blank elsewhere
    trainer = Trainer(TrainConfig(progress="off"))
    # right on every recall step and confidently "symbol 1" on every other step (where the
    # answer would be blank): still perfect, with a near-zero loss
    logits = 20 * torch.nn.functional.one_hot(recalled, task.num_outputs).float()
    logits[:, :task.recall_steps.start] = 20 * torch.nn.functional.one_hot(
        torch.full_like(recalled[:, :task.recall_steps.start], 1), task.num_outputs).float()
    scores = trainer.evaluate(FixedLogits(logits), test)
    assert scores["accuracy"] == 1.0 and scores["loss"] < 1e-6
    # answering blank everywhere (the all-steps memoryless answer) now scores 0
    blanks = 20 * torch.nn.functional.one_hot(torch.zeros_like(recalled), task.num_outputs).float()
    assert trainer.evaluate(FixedLogits(blanks), test)["accuracy"] == 0.0
    # uniform over the symbols (blank ruled out) costs ln K per recalled symbol
    uniform = torch.zeros(*recalled.shape, task.num_outputs)
    uniform[..., 0] = -1e9
    assert trainer.evaluate(FixedLogits(uniform), test)["loss"] == pytest.approx(
        task.guess_cross_entropy, rel=1e-5)


def test_recall_accuracy_scores_only_the_recall_steps():
    task = get_task("copy", length=5, n_symbols=3, alphabet=4, n_test=4)
    data = task.splits(0)["test"]
    perfect = torch.nn.functional.one_hot(data.targets.clamp(min=0), task.num_outputs).float()
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
