"""Models: ModelConfig validation, head shapes, readout of the last valid state."""

import dataclasses

import pytest
import torch
from torch import nn

from rnnlab.errors import RnnlabError
from rnnlab.models import (
    LastStateRegressor,
    ModelConfig,
    SequenceClassifier,
    SequenceRegressor,
    SequenceTagger,
    build_model,
)

TOKENS = {"vocab_size": 10, "num_outputs": 19}
FEATURES = {"input": "features", "input_size": 3}


@pytest.mark.parametrize(("head", "cls", "extra", "shape"), [
    ("classify", SequenceClassifier, TOKENS, (4, 19)),
    ("tag", SequenceTagger, {"vocab_size": 2, "num_outputs": 4}, (4, 6, 4)),
    ("regress", SequenceRegressor, {**FEATURES, "num_outputs": 2}, (4, 6, 2)),
    ("classify", SequenceClassifier, {**FEATURES, "num_outputs": 10}, (4, 10)),
    ("regress-last", LastStateRegressor, {**FEATURES, "num_outputs": 3}, (4, 3)),
    ("regress-last", LastStateRegressor, {"vocab_size": 5, "num_outputs": 1}, (4, 1)),
])
@pytest.mark.parametrize("cell", ["srn", "residual-srn", "lstm", "gru"])
def test_heads_shapes_and_gradients_reach_every_parameter(cell, head, cls, extra, shape):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, head=head, hidden_size=5, num_layers=2,
                         bidirectional=True, embedding_dim=4, **extra)
    model = build_model(config)
    assert type(model) is cls and model.config is config
    x = (torch.randint(0, config.vocab_size, (4, 6)) if config.input == "tokens"
         else torch.randn(4, 6, 3))
    out = model(x, lengths=torch.tensor([6, 1, 3, 6]))
    assert out.shape == shape
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_return_state_and_initial_state():
    model = build_model(ModelConfig(cell="lstm", hidden_size=4, **TOKENS))
    x = torch.randint(0, 10, (2, 5))
    logits, (h, c) = model(x, return_state=True)
    assert logits.shape == (2, 19) and h.shape == c.shape == (1, 2, 4)
    # Continuing from the state equals reading the concatenated sequence.
    y = torch.randint(0, 10, (2, 3))
    torch.testing.assert_close(model(y, state=(h, c)), model(torch.cat([x, y], 1)),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_reads_each_sequences_last_valid_state(bidirectional):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="gru", hidden_size=4, bidirectional=bidirectional,
                                    **TOKENS))
    x = torch.randint(0, 10, (3, 7))
    lengths = [7, 2, 5]
    batch = model(x, lengths=lengths)
    for n, length in enumerate(lengths):
        torch.testing.assert_close(batch[n:n + 1], model(x[n:n + 1, :length]),
                                   atol=1e-6, rtol=0)
    # Bidirectional: forward state at the last valid step joined with backward at step 0.
    outputs, _ = model.recurrent(model.embed(x), lengths=lengths)
    last = torch.stack([outputs[n, length - 1] for n, length in enumerate(lengths)])
    features = (torch.cat([last[:, :4], outputs[:, 0, 4:]], dim=-1) if bidirectional
                else last)
    torch.testing.assert_close(batch, model.head(features), atol=1e-6, rtol=0)


def test_zeros_init_model_draws_what_the_seed_004_model_draws():
    # Seed 004: zero SRN, xavier-uniform Embedding(10, 32), then nn.Linear(32, 19).
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="residual-srn", init="zeros", **TOKENS))
    torch.manual_seed(0)
    embedding = nn.init.xavier_uniform_(torch.empty(10, 32))
    head = nn.Linear(32, 19)
    assert torch.equal(model.embedding.weight, embedding)
    assert torch.equal(model.head.weight, head.weight)
    assert torch.equal(model.head.bias, head.bias)
    assert all(not p.any() for p in model.recurrent.parameters())


def test_native_model_equals_python_model():
    config = ModelConfig(cell="lstm", hidden_size=6, num_layers=2, head="tag", **TOKENS)
    torch.manual_seed(0)
    python = build_model(config)
    torch.manual_seed(0)
    native = build_model(dataclasses.replace(config, backend="native"))
    x = torch.randint(0, 10, (3, 5))
    torch.testing.assert_close(native(x, lengths=[5, 2, 4]), python(x, lengths=[5, 2, 4]),
                               atol=1e-5, rtol=0)


def test_features_regressor_like_seed_001():
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=16, init="normal", init_std=0.001,
                                    head="regress", input="features", input_size=1,
                                    num_outputs=1))
    assert model.embedding is None
    assert model.recurrent.cells[0].weight_hh.std().item() == pytest.approx(0.001, rel=0.2)
    assert model(torch.randn(1, 50, 1)).shape == (1, 50, 1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_regress_last_reads_each_sequences_last_valid_state(bidirectional):
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="lstm", hidden_size=4, bidirectional=bidirectional,
                                    head="regress-last", num_outputs=2, **FEATURES))
    x = torch.randn(3, 7, 3)
    lengths = [7, 2, 5]
    batch = model(x, lengths=lengths)
    assert batch.shape == (3, 2) and batch.is_floating_point()
    for n, length in enumerate(lengths):
        torch.testing.assert_close(batch[n:n + 1], model(x[n:n + 1, :length]),
                                   atol=1e-6, rtol=0)
    outputs, _ = model.recurrent(x, lengths=lengths)
    last = torch.stack([outputs[n, length - 1] for n, length in enumerate(lengths)])
    features = (torch.cat([last[:, :4], outputs[:, 0, 4:]], dim=-1) if bidirectional
                else last)
    torch.testing.assert_close(batch, model.head(features), atol=1e-6, rtol=0)


def test_regress_last_trains_by_squared_error_on_every_output():
    from rnnlab.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_size=4, head="regress-last", num_outputs=3,
                                    **FEATURES))
    x, targets = torch.randn(5, 6, 3), torch.randn(5, 3)
    # lengths shorter than num_outputs must not mask any of the 3 outputs
    lengths = torch.tensor([1, 2, 6, 3, 1])
    with torch.no_grad():
        expected = (model(x, lengths=lengths) - targets).square().mean().item()
    from rnnlab.tasks.base import SplitData

    scores = Trainer(TrainConfig(progress="off")).evaluate(model, SplitData(x, targets, lengths))
    assert scores["mse"] == pytest.approx(expected, rel=1e-5)
    assert scores["loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cell": "rnn", **TOKENS}, "unknown cell 'rnn'; known cells"),
    ({"head": "regress_last", **TOKENS},
     "unknown head 'regress_last'; known heads: .*regress-last"),
    ({"head": "regress-last", "vocab_size": 10}, "num_outputs"),
    ({"num_outputs": 19}, "vocab_size"),
    ({"input": "features", "num_outputs": 2}, "input_size"),
    ({"vocab_size": 10}, "num_outputs"),
    ({"head": "rank", **TOKENS}, "unknown head 'rank'"),
    ({"input": "pixels", **TOKENS}, "unknown input"),
    ({"hidden_size": 0, **TOKENS}, "hidden_size"),
    ({"num_layers": 1.5, **TOKENS}, "num_layers"),
    ({"init": "he", **TOKENS}, "unknown initialiser 'he'"),
    ({"init_std": -1.0, **TOKENS}, "init_std"),
    ({"cell": "lstm", "nonlinearity": "relu", **TOKENS}, "only to srn"),
    ({"cell": "residual-srn", "backend": "native", **TOKENS}, "no torch.nn twin"),
    ({"backend": "jax", **TOKENS}, "unknown backend"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(RnnlabError, match=message):
        ModelConfig(**kwargs)


def test_config_is_frozen_and_round_trips():
    config = ModelConfig(**TOKENS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 64
    assert ModelConfig(**config.asdict()) == config


def test_bad_model_input_raises():
    model = build_model(ModelConfig(**TOKENS))
    with pytest.raises(RnnlabError, match=r"token ids must lie in 0\.\.9, got 0\.\.10"):
        model(torch.tensor([[0, 10]]))
    with pytest.raises(RnnlabError, match=r"expected token ids of shape \(N, L\)"):
        model(torch.randn(2, 3))
    features = build_model(ModelConfig(**FEATURES, num_outputs=2))
    with pytest.raises(RnnlabError, match=r"expected input of shape \(N, L, 3\)"):
        features(torch.randn(2, 5))
