"""The seed 004 SRN's single bias: the cell, the model, the nndl protocol, the engine."""

from __future__ import annotations

import json

import pytest
import torch

from rnnlab.cells import SRN, ResidualSRN
from rnnlab.cli import main
from rnnlab.engine import Job
from rnnlab.engine.jobs import check_supported
from rnnlab.errors import RnnlabError
from rnnlab.experiments.memory import MemoryConfig
from rnnlab.experiments.runners import model_config_for as memory_model_config
from rnnlab.experiments.runners import task_for
from rnnlab.layers import Recurrent
from rnnlab.models import ModelConfig
from rnnlab.train import TrainConfig


def test_single_bias_srn_is_the_seeds_equation():
    cell = SRN(3, 4, bias="single", init="normal", init_std=0.5)
    assert [name for name, _ in cell.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih"]
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    w, u, b = cell.weight_ih.T, cell.weight_hh.T, cell.bias_ih
    torch.testing.assert_close(cell(x, h)[0], torch.tanh(x @ w + h @ u + b))
    # the same as a two-bias cell whose biases add up to b
    two = SRN(3, 4)
    with torch.no_grad():
        two.weight_ih.copy_(cell.weight_ih)
        two.weight_hh.copy_(cell.weight_hh)
        two.bias_ih.copy_(b * 0.25)
        two.bias_hh.copy_(b * 0.75)
    torch.testing.assert_close(two(x, h)[0], cell(x, h)[0])
    assert "bias='single'" in repr(ResidualSRN(3, 4, bias="single"))


def test_single_bias_needs_the_python_backend():
    with pytest.raises(RnnlabError, match="bias='single'.*backend='python'"):
        ModelConfig(vocab_size=10, num_outputs=2, bias="single", backend="native")
    with pytest.raises(RnnlabError, match="no torch.nn twin"):
        Recurrent("srn", 3, 4, backend="native", bias="single")
    with pytest.raises(RnnlabError, match="bias must be"):
        SRN(3, 4, bias="double")


def test_train_protocol_nndl_uses_the_single_bias_srn(tmp_path, capsys):
    common = ["train", "digitsum", "--protocol", "nndl", "--length", "4", "--max-steps", "2",
              "--json"]
    assert main([*common, "--out", str(tmp_path / "srn")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_config"]["bias"] == "single"
    assert main([*common, "--cell", "lstm", "--out", str(tmp_path / "lstm")]) == 0
    assert json.loads(capsys.readouterr().out)["model_config"]["bias"] == "two"


def test_engine_refuses_single_bias_and_memory_nndl_keeps_two():
    config = ModelConfig(vocab_size=10, num_outputs=19, bias="single")
    data = (torch.zeros(4, 3, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(RnnlabError, match="bias='single'.*--engine loop"):
        check_supported(Job(data, data, config, TrainConfig()), 0)
    # rnnlab memory --protocol nndl: torch's two biases, so the fast engine trains it
    spec = MemoryConfig(protocol="nndl", cells=("srn",), lengths=(5,), seeds=1).specs()[0]
    task = task_for(spec)
    splits = task.splits(0)
    model = memory_model_config(spec, task)
    assert model.bias == "two"
    check_supported(Job(splits["train"], splits["dev"], model, TrainConfig()), 0)
