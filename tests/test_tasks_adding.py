import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.tasks import get_task


def test_shapes_markers_and_sums():
    task = get_task("adding", length=10, n_train=200, n_dev=2, n_test=3)
    train = task.splits(0)["train"]
    assert train.inputs.shape == (200, 10, 2) and train.targets.shape == (200, 1)
    values, markers = train.inputs[..., 0], train.inputs[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert markers.sum(1).eq(2).all()
    assert markers[:, :5].sum(1).eq(1).all() and markers[:, 5:].sum(1).eq(1).all()
    assert torch.allclose((values * markers).sum(1, keepdim=True), train.targets)
    assert torch.equal(task.splits(0)["train"].inputs, train.inputs)
    assert not torch.equal(task.splits(1)["train"].inputs, train.inputs)


def test_shortest_sequence_marks_both_steps():
    task = get_task("adding", length=2, n_train=5)
    data = task.splits(0)["train"]
    assert data.inputs[..., 1].eq(1).all()
    assert torch.allclose(data.inputs[..., 0].sum(1, keepdim=True), data.targets)


def test_memoryless_baseline_is_about_one_sixth():
    task = get_task("adding", n_test=20000, n_train=5000)
    baseline = task.memoryless_baseline(task.splits(0))
    assert baseline == pytest.approx(1 / 6, abs=0.01)
    assert task.chance == pytest.approx(0.1667, abs=1e-4)


@pytest.mark.parametrize("params, word", [({"length": 1}, "length"), ({"n_dev": 0}, "n_dev")])
def test_impossible_parameters(params, word):
    with pytest.raises(RnnlabError, match=word):
        get_task("adding", **params)


def test_model_is_a_last_state_regressor_trained_by_mse():
    from rnnlab.models import LastStateRegressor, build_model, model_config_for
    from rnnlab.train import TrainConfig, Trainer

    task = get_task("adding", length=8, n_train=64, n_dev=32, n_test=32)
    config = model_config_for(task.spec, hidden_size=8)
    assert config.head == "regress-last" and config.num_outputs == 1
    torch.manual_seed(0)
    model = build_model(config)
    assert type(model) is LastStateRegressor
    splits = task.splits(0)
    assert model(splits["test"].inputs).shape == splits["test"].targets.shape == (32, 1)
    result = Trainer(TrainConfig(epochs=2, batch_size=16, progress="off")).fit(
        model, splits["train"], splits["dev"], splits["test"])
    assert result.metric == "mse"
    with torch.no_grad():
        mse = (model(splits["test"].inputs) - splits["test"].targets).square().mean().item()
    assert result.test["mse"] == pytest.approx(mse, rel=1e-5)
