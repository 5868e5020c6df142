"""The memory suite's tasks: generators, chance and memoryless scores, the uniform
description (axis, score), and a user's task registered by name."""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from rnnlab.cli import main
from rnnlab.errors import RnnlabError
from rnnlab.models import model_config_for
from rnnlab.tasks import (
    Task,
    get_task,
    memory_task,
    memory_task_names,
    register_task,
    task_names,
    unregister_task,
)
from rnnlab.train import TrainConfig, Trainer
from user_tasks import FirstBit

SUITE = ("digitsum", "copy", "adding", "selective-copy", "associative-recall")


class Oracle(torch.nn.Module):
    """Per-step logits putting all weight on the answer worked out from the input."""

    def __init__(self, answer, classes):
        super().__init__()
        self.answer, self.classes = answer, classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.nn.functional.one_hot(self.answer(x).clamp(min=0), self.classes).float()


def selective_copy_answer(task):
    def answer(x):
        body = x[:, :task.length]
        out = torch.full_like(x, -100)
        for row in range(x.shape[0]):
            out[row, task.length + 1:] = body[row][body[row] != 0]
        return out
    return answer


def associative_recall_answer(task):
    def answer(x):
        out = torch.full_like(x, -100)
        for row in range(x.shape[0]):
            seq = x[row].tolist()
            bound = {seq[i]: seq[i + 1] - 1 - task.n_keys for i in range(0, 2 * task.n_pairs, 2)}
            for t in range(2 * task.n_pairs, task.length):
                if seq[t] != 0:
                    out[row, t] = bound[seq[t]]
        return out
    return answer


def test_selective_copy_layout_by_hand():
    task = get_task("selective-copy", length=6, n_symbols=2, alphabet=4)
    data = task.generate(200, torch.Generator().manual_seed(0))
    assert data.inputs.shape == (200, 6 + 1 + 2)
    body = data.inputs[:, :6]
    assert ((body > 0).sum(1) == 2).all() and body.max() <= 4
    assert (data.inputs[:, 6] == 5).all() and (data.inputs[:, 7:] == 0).all()
    assert (data.targets[:, :7] == -100).all()
    # the positions move: not every sequence holds its symbols at the same steps
    assert len({tuple((row > 0).nonzero().flatten().tolist()) for row in body}) > 5


@pytest.mark.parametrize("name, params, answer", [
    ("selective-copy", {"length": 20, "n_symbols": 3}, selective_copy_answer),
    ("associative-recall", {"length": 20, "n_pairs": 4}, associative_recall_answer),
])
def test_answers_follow_from_the_input_and_the_trainer_scores_only_them(name, params, answer):
    task = get_task(name, n_train=64, n_dev=64, n_test=300, **params)
    test = task.splits(0)["test"]
    expected = answer(task)(test.inputs)
    assert torch.equal(expected, test.targets)
    assert test.inputs.max() < task.vocab_size and test.targets.max() < task.num_outputs
    scored_per_row = (test.targets != -100).sum(1)
    assert (scored_per_row == params.get("n_symbols", params.get("n_pairs"))).all()
    oracle = Oracle(answer(task), task.num_outputs)
    trainer = Trainer(TrainConfig(progress="off"))
    assert trainer.evaluate(oracle, test)["accuracy"] == 1.0
    # a wrong answer on one recall step per row costs exactly that step's share
    wrong = Oracle(lambda x: torch.where(expected == -100, -100, (expected + 1) % task.num_outputs),
                   task.num_outputs)
    assert trainer.evaluate(wrong, test)["accuracy"] == 0.0


def test_associative_recall_keys_and_values_are_distinct_and_queried_once():
    task = get_task("associative-recall", length=30, n_pairs=5, n_keys=8, n_values=6)
    data = task.generate(100, torch.Generator().manual_seed(3))
    for row in data.inputs.tolist():
        keys, values = row[0:10:2], row[1:10:2]
        assert len(set(keys)) == 5 and all(1 <= k <= 8 for k in keys)
        assert len(set(values)) == 5 and all(9 <= v <= 14 for v in values)
        queries = [t for t in row[10:] if t != 0]
        assert sorted(queries) == sorted(keys)


@pytest.mark.parametrize("name", ["selective-copy", "associative-recall"])
def test_determinism_and_splits_are_different_draws(name):
    task = get_task(name, n_train=2000, n_dev=500, n_test=500)
    splits = task.splits(1)
    assert torch.equal(task.splits(1)["test"].inputs, splits["test"].inputs)
    assert not torch.equal(task.splits(2)["test"].inputs, splits["test"].inputs)
    train_rows = {tuple(r) for r in splits["train"].inputs.tolist()}
    # at the default length the space of sequences is huge: no test sequence is a train one
    assert not any(tuple(r) in train_rows for r in splits["test"].inputs.tolist())
    assert not any(tuple(r) in train_rows for r in splits["dev"].inputs.tolist())


@pytest.mark.parametrize("name", ["selective-copy", "associative-recall", "copy"])
def test_chance_is_the_best_constant_answer_and_memoryless_lands_there(name):
    task = get_task(name, length=24, n_train=2000, n_test=4000)
    splits = task.splits(0)
    scored = splits["test"].targets[splits["test"].targets != -100]
    best_constant = float(torch.bincount(scored).max()) / scored.numel()
    assert best_constant == pytest.approx(task.chance, abs=0.02)
    memoryless = task.memoryless_score(splits)
    assert memoryless == pytest.approx(task.chance, abs=0.02)
    assert task.chance_score == task.chance  # accuracy is its own score


def test_adding_score_maps_the_mean_answer_to_zero():
    task = get_task("adding", length=20, n_train=4000, n_test=4000)
    test = task.splits(0)["test"]
    mean_answer_mse = float(((test.targets - 1.0) ** 2).mean())
    assert mean_answer_mse == pytest.approx(task.chance, rel=0.05)  # 1/6 is what it measures
    assert task.score(task.chance) == 0.0 and task.score({"mse": 0.0}) == 1.0
    assert task.score(task.chance / 4) == pytest.approx(0.75)
    assert task.score(1.0) == 0.0  # worse than the mean answer: clipped, not negative
    # only when the last step is marked (probability 2 / length) does a memoryless
    # model know half the sum, which explains half the variance: a score of 1 / length
    assert task.memoryless_score(task.splits(0)) == pytest.approx(1 / 20, abs=0.02)


def test_every_suite_task_declares_an_axis_field_score_and_lengths():
    assert set(SUITE) <= set(memory_task_names())
    for name in SUITE:
        task = get_task(name)
        fields = {f.name for f in dataclasses.fields(task)}
        assert task.memory_axis in fields and task.memory_axis_label
        assert len(task.memory_lengths) >= 3
        for length in task.memory_lengths:  # every default length makes a valid task
            get_task(name, **{task.memory_axis: length})
        memory = task.describe_memory()
        assert 0.0 <= memory["chance_score"] < 1.0 and memory["score"]
        assert getattr(memory_task(name, 17, n_test=5) if name != "digitsum"
                       else memory_task(name, 17), task.memory_axis) == 17
    with pytest.raises(RnnlabError, match="'sine' has no memory axis"):
        memory_task("sine", 10)


@pytest.fixture
def user_task():
    register_task(FirstBit)
    yield FirstBit
    unregister_task("first-bit")


def test_registered_user_task_is_like_a_built_in(user_task, capsys):
    assert "first-bit" in task_names() and "first-bit" in memory_task_names()
    task = get_task("first-bit", length=3)
    assert isinstance(task, FirstBit) and task.splits(0)["train"].inputs.shape == (64, 3)
    assert model_config_for(task.spec, cell="gru").vocab_size == 2
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("first-bit "))
    assert "memory axis: length (bits after the first)" in lines[at + 1]
    assert "chance 0.5" in lines[at + 1]
    register_task(FirstBit)  # the same class again is harmless


def test_register_task_mistakes_are_one_sentence(user_task):
    class NotADataclass(Task):
        name: ClassVar[str] = "plain"

    @dataclass
    class Clash(FirstBit):
        name: ClassVar[str] = "copy"

    @dataclass
    class BadAxis(FirstBit):
        name: ClassVar[str] = "bad-axis"
        memory_axis: ClassVar[str | None] = "delay"

    @dataclass
    class Again(FirstBit):
        pass

    cases = [(NotADataclass, "must be a @dataclass"), (Clash, "is a built-in task's"),
             (BadAxis, "memory_axis='delay', which is not one of its fields"),
             (Again, "already registered"), (int, "needs a subclass of rnnlab.tasks.Task")]
    for cls, message in cases:
        with pytest.raises(RnnlabError, match=message):
            register_task(cls)
    register_task(Again, replace=True)
    assert get_task("first-bit").__class__ is Again
    with pytest.raises(RnnlabError, match="unknown task 'plain'"):
        get_task("plain")


def test_tasks_lists_a_user_task_whose_parameters_have_no_defaults(capsys):
    @dataclass
    class Needs(FirstBit):
        name: ClassVar[str] = "needs-width"
        width: int = dataclasses.field(kw_only=True)

    register_task(Needs)
    try:
        assert main(["tasks"]) == 0
    finally:
        unregister_task("needs-width")
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("needs-width "))
    assert "chance: depends on parameters without defaults" in lines[at + 1]
