"""Bring your own model: user cell and factory files written here, and every mistake's sentence."""

import textwrap

import pytest
import torch

from rnnlab.cells import LSTM
from rnnlab.engine.generic import Copy, fit_lockstep
from rnnlab.errors import RnnlabError
from rnnlab.models import ModelConfig, build_model
from rnnlab.seeding import seed_everything
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, Trainer
from rnnlab.usermodels import (
    CellModel,
    count_parameters,
    load_model,
    model_kwargs,
    state_size,
)
from user_sources import LEAKY_CELL

CELL = LEAKY_CELL

FACTORY = """
from torch import nn

class Net(nn.Module):
    def __init__(self, vocab_size, num_outputs, hidden=16):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 8)
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.out = nn.Linear(hidden, num_outputs)

    def forward(self, x):
        _, (h, _) = self.lstm(self.embed(x))
        return self.out(h[-1])

def build(vocab_size, num_outputs):   # takes only what it needs
    return Net(vocab_size, num_outputs)

def build_all(**task):                # takes everything
    assert set(task) == {"vocab_size", "num_outputs", "head", "length"}, task
    return Net(task["vocab_size"], task["num_outputs"])

def raises(vocab_size):
    raise ValueError("hidden size must be even")

def not_a_module(vocab_size):
    return [1, 2]

def wrong_shape(vocab_size, num_outputs):
    return nn.Sequential(nn.Embedding(vocab_size, num_outputs))   # (N, L, C), not (N, C)

def breaks_in_forward(vocab_size):
    return nn.Linear(3, 4)

no_model = 3
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def digitsum():
    task = get_task("digitsum", length=6)
    splits = task.splits(0)
    return task, splits, model_kwargs(task, splits["train"].inputs.shape[1])


def test_user_cell_trains_in_the_recurrent_layer(tmp_path, digitsum):
    task, splits, kwargs = digitsum
    user = load_model(f"{write(tmp_path, 'cell.py', CELL)}:LeakyCell")
    assert user.kind == "cell" and user.source_hash
    seed_everything(0)
    model = user.build(kwargs, probe=splits["train"].inputs[:2], hidden_size=8, embedding_dim=4)
    assert isinstance(model, CellModel) and model.recurrent.cell_cls.__name__ == "LeakyCell"
    assert count_parameters(model) == 10 * 4 + (8 * 4 + 8 * 8 + 16) + (8 * 19 + 19)
    assert state_size(model) == 8
    result = Trainer(TrainConfig(max_steps=5, progress="off")).fit(model, splits["train"],
                                                                   splits["dev"])
    assert result.steps == 5 and result.best_dev_metric is not None


def test_a_built_in_cell_class_builds_what_build_model_builds(digitsum):
    task, splits, kwargs = digitsum
    seed_everything(3)
    ours = CellModel(LSTM, kwargs["num_outputs"], "classify", vocab_size=10, hidden_size=8,
                     embedding_dim=4)
    seed_everything(3)
    theirs = build_model(ModelConfig(cell="lstm", vocab_size=10, num_outputs=19, hidden_size=8,
                                     embedding_dim=4))
    x = splits["test"].inputs
    torch.testing.assert_close(ours(x), theirs(x))
    assert state_size(ours) == 16


def test_user_factory_gets_the_task_keywords_it_names(tmp_path, digitsum):
    task, splits, kwargs = digitsum
    path = write(tmp_path, "models.py", FACTORY)
    probe = splits["train"].inputs[:2]
    for name in ("build", "build_all"):
        module = load_model(f"{path}:{name}").build(kwargs, probe=probe)
        assert count_parameters(module) > 0 and state_size(module) == 32


def test_user_factory_trains_lock_step_like_the_trainer(tmp_path, digitsum):
    task, splits, kwargs = digitsum
    user = load_model(f"{write(tmp_path, 'models.py', FACTORY)}:build")
    config = TrainConfig(max_steps=20, eval_every=10, progress="off", restore_best=False)
    group = fit_lockstep(lambda: user.build(kwargs), config,
                         [Copy(s, splits["train"], splits["dev"]) for s in (0, 1)], path="vmap")
    for seed, model in zip((0, 1), group.models, strict=True):
        seed_everything(seed)
        ref = user.build(kwargs)
        Trainer(config.replace(seed=seed)).fit(ref, splits["train"], splits["dev"])
        for (_, a), (_, b) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_package_module_spec(tmp_path, monkeypatch, digitsum):
    task, splits, kwargs = digitsum
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, "nets.py", FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    user = load_model("mypkg.nets:build")
    assert user.path == (package / "nets.py").resolve()
    user.build(kwargs, probe=splits["train"].inputs[:2])


def test_source_hash_changes_with_the_file_and_only_then(tmp_path):
    path = write(tmp_path, "models.py", FACTORY)
    first = load_model(f"{path}:build").source_hash
    assert load_model(f"{path}:build").source_hash == first
    path.write_text(textwrap.dedent(FACTORY).replace("hidden=16", "hidden=24"))
    edited = load_model(f"{path}:build")
    assert edited.source_hash != first
    assert edited.obj(10, 19).lstm.hidden_size == 24  # the edited file is what runs


@pytest.mark.parametrize("target, message", [
    ("missing.py:build", "model file {dir}/missing.py does not exist"),
    ("broken.py:build", "model file {dir}/broken.py has a syntax error at line 2"),
    ("boom.py:build", "importing model file {dir}/boom.py raised ZeroDivisionError"),
    ("models.py:nothing", "model file {dir}/models.py has no 'nothing'; it defines:"),
    ("models.py:no_model", ":no_model is of type int, neither a RecurrentCell subclass nor"),
    ("models.py:raises", "models.py:raises(vocab_size=10) raised ValueError: hidden size must "
                         "be even"),
    ("models.py:not_a_module", "models.py:not_a_module(vocab_size=10) returned a list, not a "
                               "torch.nn.Module"),
    ("models.py:wrong_shape", "models.py:wrong_shape: the model maps inputs (2, 6) to "
                              "(2, 6, 19), but head 'classify' needs (2, 19)"),
    ("models.py:breaks_in_forward", "models.py:breaks_in_forward: the model failed on a probe "
                                    "batch of shape (2, 6): RuntimeError"),
    ("models.py", "does not name a model: expected path/to/file.py:Name"),
    ("no_such_package.nets:build", "no module 'no_such_package.nets' can be imported"),
])
def test_each_mistake_is_one_sentence_naming_file_and_function(tmp_path, digitsum, target,
                                                               message):
    task, splits, kwargs = digitsum
    write(tmp_path, "models.py", FACTORY)
    write(tmp_path, "broken.py", "from torch import nn\ndef build(:\n    pass\n")
    write(tmp_path, "boom.py", "x = 1 / 0\n")
    spec = target if target.startswith("no_such") else f"{tmp_path}/{target}"
    with pytest.raises(RnnlabError) as info:
        load_model(spec).build(kwargs, probe=splits["train"].inputs[:2])
    text = str(info.value)
    assert message.format(dir=tmp_path.resolve()) in text
    assert "\n" not in text and "Traceback" not in text


def test_lengths_the_model_cannot_take_are_refused(tmp_path, digitsum):
    task, splits, kwargs = digitsum
    user = load_model(f"{write(tmp_path, 'models.py', FACTORY)}:build")
    with pytest.raises(RnnlabError, match="forward takes no lengths argument"):
        user.build(kwargs, probe=splits["train"].inputs[:2], probe_lengths=torch.tensor([6, 4]))
