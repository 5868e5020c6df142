"""The trainer: it learns, it is deterministic, it resumes exactly, it fails clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rnnlab.errors import RnnlabError
from rnnlab.io import read_csv
from rnnlab.models import ModelConfig, build_model
from rnnlab.tasks import get_task
from rnnlab.tasks.base import SplitData
from rnnlab.train import (
    Callback,
    TrainConfig,
    Trainer,
    clip_gradients,
    compute_loss,
    load_checkpoint,
    seeded_model,
)
from training_helpers import CrashAt, params_equal

QUIET = {"progress": "off"}


def digitsum(length: int = 5, seed: int = 0) -> dict[str, SplitData]:
    return get_task("digitsum", length=length).splits(seed)


def small_model(cell: str = "srn", seed: int = 0, hidden: int = 16) -> nn.Module:
    config = ModelConfig(cell=cell, hidden_size=hidden, embedding_dim=8, vocab_size=10,
                         num_outputs=19)
    return seeded_model(config, seed)


def test_overfits_a_single_batch():
    batch = digitsum().get("train").subset(torch.arange(0, 300, 37))  # 9 examples
    model = small_model("lstm", hidden=32)
    config = TrainConfig(epochs=150, batch_size=16, lr=1e-2, **QUIET)
    trainer = Trainer(config)
    result = trainer.fit(model, batch)
    scores = trainer.evaluate(model, batch)
    assert result.steps == 150
    assert scores["accuracy"] == 1.0
    assert scores["loss"] < 0.05


def test_same_seed_same_numbers():
    splits = digitsum()
    config = TrainConfig(epochs=3, batch_size=16, eval_every=10, seed=3, **QUIET)
    runs = []
    for _ in range(2):
        model = small_model(seed=3)
        result = Trainer(config).fit(model, splits["train"], splits["dev"], splits["test"])
        runs.append((model, result))
    (m1, r1), (m2, r2) = runs
    assert params_equal(m1, m2)
    assert r1.history == r2.history and r1.test == r2.test
    other = small_model(seed=4)
    Trainer(config.replace(seed=4)).fit(other, splits["train"], splits["dev"])
    assert not params_equal(m1, other)


@pytest.mark.parametrize("crash_step", [23, 26])  # mid-epoch checkpoint; epoch-end checkpoint
def test_resume_after_crash_equals_uninterrupted_run(tmp_path, crash_step):
    splits = digitsum()
    train = splits["train"].subset(torch.arange(96))  # 6 batches of 16 per epoch
    config = TrainConfig(epochs=5, batch_size=16, eval_every=4, shuffle=True, seed=1,
                         early_stop_patience=50, **QUIET)

    reference = small_model(seed=1)
    ref = Trainer(config).fit(reference, train, splits["dev"], splits["test"],
                              out_dir=tmp_path / "ref")

    crashed = small_model(seed=1)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, callbacks=[CrashAt(crash_step)]).fit(
            crashed, train, splits["dev"], out_dir=tmp_path / "run")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["step"] == crash_step - crash_step % 4
    if crash_step == 26:  # checkpoint at step 24 = the end of epoch 4
        assert last["batch_in_epoch"] == 6

    resumed_model = small_model(seed=99)  # a different init: everything comes from last.pt
    resumed = Trainer(config).fit(resumed_model, train, splits["dev"], splits["test"],
                                  out_dir=tmp_path / "run", resume=True)
    assert resumed.resumed_from_step == last["step"]
    assert resumed.steps == ref.steps == 30
    assert params_equal(resumed_model, reference)
    ref_last = load_checkpoint(tmp_path / "ref" / "last.pt")["model"]
    run_last = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.equal(ref_last[k], run_last[k]) for k in ref_last)
    assert resumed.history == ref.history and resumed.test == ref.test
    assert read_csv(tmp_path / "run" / "metrics.csv") == read_csv(tmp_path / "ref" / "metrics.csv")


def test_resume_rejects_a_changed_recipe(tmp_path):
    splits = digitsum()
    config = TrainConfig(epochs=1, batch_size=32, **QUIET)
    Trainer(config).fit(small_model(), splits["train"], splits["dev"], out_dir=tmp_path)
    with pytest.raises(RnnlabError, match="lr=0.001 \\(now 0.01\\)"):
        Trainer(config.replace(lr=1e-2)).fit(small_model(), splits["train"], splits["dev"],
                                             out_dir=tmp_path, resume=True)
    longer = Trainer(config.replace(epochs=2)).fit(small_model(), splits["train"],
                                                   splits["dev"], out_dir=tmp_path, resume=True)
    assert longer.resumed_from_step == 10 and longer.steps == 20


class NanAfter(nn.Module):
    """Wraps a model; its loss turns nan once ``poisoned`` is set."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.poisoned = False

    def forward(self, x, lengths=None):
        out = self.inner(x)
        return out * float("nan") if self.poisoned else out


class PoisonAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, loss):
        if trainer.state.step == self.step:
            trainer.model.poisoned = True


def test_nonfinite_loss_stops_clearly_and_keeps_the_last_good_checkpoint(tmp_path):
    splits = digitsum()
    model = NanAfter(small_model())
    config = TrainConfig(epochs=5, batch_size=32, eval_every=4, **QUIET)
    with pytest.raises(RnnlabError) as info:
        Trainer(config, callbacks=[PoisonAt(6)]).fit(model, splits["train"], splits["dev"],
                                                     out_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("loss became nan at step 7 (epoch 1)")
    assert f"the last good checkpoint is kept at {tmp_path / 'last.pt'} (step 4)" in message
    kept = load_checkpoint(tmp_path / "last.pt")
    assert kept["step"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values())
    # the nan step was never applied: the parameters in memory are still finite
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_exploding_learning_rate_is_caught():
    splits = digitsum()
    model = seeded_model(ModelConfig(cell="srn", nonlinearity="relu", hidden_size=16,
                                     vocab_size=10, num_outputs=19), 0)
    with pytest.raises(RnnlabError, match="loss became (nan|infinite) at step"):
        Trainer(TrainConfig(epochs=20, batch_size=8, lr=1e10, optimizer="sgd", **QUIET)).fit(
            model, splits["train"])


def test_best_checkpoint_is_restored_before_the_test(tmp_path):
    splits = digitsum()
    # a dev split with shuffled labels: its best evaluation is not the last one
    dev = SplitData(splits["dev"].inputs, splits["dev"].targets[torch.randperm(
        100, generator=torch.Generator().manual_seed(0))])
    config = TrainConfig(epochs=8, batch_size=16, eval_every=5, lr=3e-3, **QUIET)
    model = small_model()
    trainer = Trainer(config)
    result = trainer.fit(model, splits["train"], dev, splits["test"], out_dir=tmp_path)
    assert result.best_step is not None and result.best_step < result.steps
    best = load_checkpoint(tmp_path / "best.pt")
    last = load_checkpoint(tmp_path / "last.pt")
    assert best["step"] == result.best_step and last["step"] == result.steps
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in best["model"].items())
    scored = build_model(model.config)
    scored.load_state_dict(best["model"])
    assert result.test == trainer.evaluate(scored, splits["test"])
    assert result.best_dev_metric == max(r["dev_accuracy"] for r in result.history)

    kept_last = small_model()
    Trainer(config.replace(restore_best=False)).fit(kept_last, splits["train"], dev)
    assert all(torch.equal(v, kept_last.state_dict()[k]) for k, v in last["model"].items())


def _one_sgd_step(config: TrainConfig) -> list[torch.Tensor]:
    """The parameter changes of one SGD step with lr=1: minus the clipped gradients."""
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    Trainer(config).fit(model, digitsum()["train"])
    return [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]


def test_global_norm_clipping_clips():
    config = TrainConfig(epochs=1, max_steps=1, batch_size=64, lr=1.0, optimizer="sgd", **QUIET)
    free_norm = torch.cat([d.flatten() for d in _one_sgd_step(config)]).norm()
    clipped = _one_sgd_step(config.replace(clip_norm=0.01))
    norm = torch.cat([d.flatten() for d in clipped]).norm()
    assert free_norm > 0.05
    assert float(norm) == pytest.approx(0.01, rel=1e-4)


def test_per_parameter_clipping_clips_each_parameter():
    config = TrainConfig(epochs=1, max_steps=1, batch_size=64, lr=1.0, optimizer="sgd",
                         clip_per_param=0.001, **QUIET)
    norms = [float(d.norm()) for d in _one_sgd_step(config)]
    assert max(norms) <= 0.001 * (1 + 1e-4)
    assert sum(n > 0.0009 for n in norms) >= 3  # most gradients were larger than the limit


def test_clip_value_clamps_elements():
    p = nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([5.0, -0.1, -7.0])
    clip_gradients([p], TrainConfig(clip_value=1.0))
    assert p.grad.tolist() == pytest.approx([1.0, -0.1, -1.0])


def test_accepts_arrays_pairs_and_datasets():
    splits = digitsum()
    train, dev = splits["train"], splits["dev"]
    config = TrainConfig(epochs=2, batch_size=32, eval_every=5, **QUIET)

    def run(train_data, dev_data):
        model = small_model()
        return model, Trainer(config).fit(model, train_data, dev_data)

    m0, r0 = run(train, dev)
    m1, r1 = run((train.inputs.numpy(), train.targets.numpy()), (dev.inputs, dev.targets))
    dataset = torch.utils.data.TensorDataset(train.inputs, train.targets)
    m2, r2 = run(dataset, dev)
    assert params_equal(m0, m1) and params_equal(m0, m2)
    assert r0.history == r1.history == r2.history
    with pytest.raises(RnnlabError, match="must be a SplitData"):
        run("train.txt", dev)
    with pytest.raises(RnnlabError, match="300 inputs but 5 targets"):
        run((train.inputs, train.targets[:5]), dev)


def test_tagging_loss_ignores_padded_steps():
    logits = torch.randn(2, 4, 3)
    targets = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 1]])
    lengths = torch.tensor([2, 4])
    loss, count = compute_loss(logits, targets, lengths, "cross_entropy", "mean")
    garbage = logits.clone()
    garbage[0, 2:] = 100.0
    loss2, _ = compute_loss(garbage, targets, lengths, "cross_entropy", "mean")
    assert count == 6 and torch.equal(loss, loss2)
    expected = torch.nn.functional.cross_entropy(
        torch.cat([logits[0, :2], logits[1]]), torch.cat([targets[0, :2], targets[1]]))
    assert torch.allclose(loss, expected)
    summed, _ = compute_loss(logits, targets, lengths, "cross_entropy", "sum")
    assert torch.allclose(summed, expected * 6)


def test_regression_uses_mse_and_lower_is_better():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, 2, generator=g)
    y = x.sum(-1, keepdim=True).cumsum(1) * 0.1
    model = seeded_model(ModelConfig(cell="gru", hidden_size=8, input="features",
                                     input_size=2, head="regress", num_outputs=1), 0)
    result = Trainer(TrainConfig(epochs=30, batch_size=16, lr=1e-2, **QUIET)).fit(
        model, (x, y), (x, y))
    assert result.metric == "mse"
    first, best = result.history[0]["dev_mse"], result.best_dev_metric
    assert best == min(r["dev_mse"] for r in result.history) and best < first / 2


def test_summed_loss_scales_the_gradient():
    splits = digitsum()
    batch = splits["train"].subset(torch.arange(8))
    grads = {}
    for reduction in ("mean", "sum"):
        model = small_model()
        loss, _ = compute_loss(model(batch.inputs), batch.targets, None, "cross_entropy",
                               reduction)
        loss.backward()
        grads[reduction] = model.head.weight.grad.clone()
    assert torch.allclose(grads["sum"], grads["mean"] * 8, atol=1e-6)


def test_early_stopping_stops():
    splits = digitsum()
    dev = SplitData(splits["dev"].inputs, torch.zeros(100, dtype=torch.int64))
    config = TrainConfig(epochs=50, batch_size=32, eval_every=2, early_stop_patience=3,
                         lr=1e-2, **QUIET)
    result = Trainer(config).fit(small_model(), splits["train"], dev)
    assert result.stopped_early and result.steps < 500


def test_predict_returns_logits_in_eval_mode():
    splits = digitsum()
    model = small_model()
    trainer = Trainer(TrainConfig(eval_batch_size=7, **QUIET))
    logits = trainer.predict(model, splits["test"].inputs.numpy())
    assert logits.shape == (100, 19)
    assert torch.allclose(logits, model(splits["test"].inputs), atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"lr": math.inf}, "lr must be a positive finite number"),
    ({"optimizer": "adamw"}, "optimizer must be one of adam, sgd"),
    ({"clip_norm": -1.0}, "clip_norm must be a positive number"),
    ({"reduction": "max"}, "reduction must be one of mean, sum"),
])
def test_config_errors_are_clear(bad, message):
    with pytest.raises(RnnlabError, match=message):
        TrainConfig(**bad)


def test_config_round_trips_through_a_dict():
    config = TrainConfig(epochs=7, clip_norm=1.0, shuffle=False)
    assert TrainConfig.from_dict(config.asdict()) == config
    with pytest.raises(RnnlabError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epoch": 3})
    assert np.isclose(config.lr, 1e-3)


def test_progress_bar_only_on_a_terminal_and_never_under_ci(monkeypatch):
    from rnnlab.train.callbacks import progress_wanted

    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.setenv("CI", "true")
    assert not progress_wanted("auto") and progress_wanted("on")
    monkeypatch.delenv("CI")
    assert progress_wanted("auto") and not progress_wanted("off")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert not progress_wanted("auto")


def test_resume_with_early_stopping_stops_where_the_uninterrupted_run_stops(tmp_path):
    # last.pt must hold the early-stopping count of the evaluation it was written at;
    # one evaluation behind, a resumed run stops later than an uninterrupted one.
    splits = digitsum()
    train = splits["train"].subset(torch.arange(64))
    dev = splits["dev"].subset(torch.arange(20))
    config = TrainConfig(epochs=40, batch_size=16, lr=0.05, eval_every=1,
                         early_stop_patience=2, seed=2, **QUIET)
    reference = small_model(seed=2)
    ref = Trainer(config).fit(reference, train, dev, out_dir=tmp_path / "ref")
    assert ref.stopped_early and ref.steps < 160
    for crash_step in range(2, ref.steps):
        run = tmp_path / f"run{crash_step}"
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, callbacks=[CrashAt(crash_step)]).fit(
                small_model(seed=2), train, dev, out_dir=run)
        model = small_model(seed=2)
        resumed = Trainer(config).fit(model, train, dev, out_dir=run, resume=True)
        assert (resumed.steps, resumed.stopped_early) == (ref.steps, True), crash_step
        assert params_equal(model, reference)


def test_evaluate_and_predict_run_in_eval_mode_and_restore_the_mode():
    """Dropout before the head makes train-mode outputs random: evaluate and predict must
    switch to eval mode (and leave the model in the mode they found it in)."""
    splits = digitsum()
    model = small_model()
    model.head = nn.Sequential(nn.Dropout(0.5), model.head)
    model.train()
    trainer = Trainer(TrainConfig(eval_batch_size=32, **QUIET))
    torch.manual_seed(0)
    logits = trainer.predict(model, splits["test"].inputs)
    scores = trainer.evaluate(model, splits["test"])
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model(splits["test"].inputs)
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)
    correct = (expected.argmax(-1) == splits["test"].targets).float().mean()
    assert scores["accuracy"] == pytest.approx(float(correct), abs=1e-9)
    model.train()
    with torch.no_grad():  # the check can fail: in train mode the outputs differ
        assert not torch.allclose(model(splits["test"].inputs), expected, atol=1e-3)
