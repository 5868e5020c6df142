"""Stateful training (truncated BPTT): the trainer equals a hand-written loop, resumes
exactly, resets where streams begin, and scores dev along its streams."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab.errors import RnnlabError
from rnnlab.io import read_csv
from rnnlab.models import ModelConfig
from rnnlab.tasks.base import SplitData
from rnnlab.train import TrainConfig, Trainer, load_checkpoint, seeded_model
from test_trainer import CrashAt

QUIET = {"progress": "off"}


def streams(n: int = 3, length: int = 50, seed: int = 0) -> SplitData:
    """``n`` noisy sine streams; the target is the next value (so memory helps)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length + 1, dtype=torch.float32) * 0.3
    phase = torch.rand(n, 1, generator=g) * 6
    wave = torch.sin(t + phase) + 0.05 * torch.randn(n, length + 1, generator=g)
    return SplitData(wave[:, :-1, None], wave[:, 1:, None])


def model(cell: str = "lstm", seed: int = 0):
    config = ModelConfig(cell=cell, hidden_size=8, input="features", input_size=1,
                         head="regress", num_outputs=1)
    return seeded_model(config, seed)


def hand_tbptt(cell: str, data: SplitData, chunk: int, epochs: int, lr: float, seed: int,
               carry: bool = True, reset: bool = True):
    """The loop every tutorial writes: carry the state, detach it, reset each epoch."""
    net = model(cell, seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses, state = [], None
    for _ in range(epochs):
        if reset:
            state = None
        for start in range(0, data.inputs.shape[1], chunk):
            x = data.inputs[:, start:start + chunk]
            y = data.targets[:, start:start + chunk]
            output, final = net(x, state=state, return_state=True)
            loss = F.mse_loss(output, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            state = tuple(s.detach() for s in final) if isinstance(final, tuple) \
                else final.detach()
            state = state if carry else None
            losses.append(loss.item())
    return net, losses, state


@pytest.mark.parametrize("cell", ["srn", "lstm"])
def test_stateful_trainer_equals_a_hand_written_tbptt_loop(cell):
    data = streams()
    chunk, epochs, lr = 7, 3, 0.01  # 50 = 7 * 7 + 1: every epoch ends with a 1-step chunk
    reference, losses, state = hand_tbptt(cell, data, chunk, epochs, lr, seed=4)
    net = model(cell, seed=4)
    config = TrainConfig(epochs=epochs, lr=lr, tbptt=chunk, eval_every=1, seed=4, **QUIET)
    trainer = Trainer(config)
    result = trainer.fit(net, data)
    assert result.steps == epochs * 8
    for ours, theirs in zip(net.state_dict().values(), reference.state_dict().values(),
                            strict=True):
        assert torch.equal(ours, theirs)
    assert [r["train_loss"] for r in result.history] == pytest.approx(losses, abs=0)
    carried = trainer.carried_state
    for ours, theirs in zip(carried if cell == "lstm" else [carried],
                            state if cell == "lstm" else [state], strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("change", [{"carry": False}, {"reset": False}])
def test_the_comparison_sees_a_missing_carry_or_reset(change):
    """The equality above is decisive: a loop that drops the carry, or never resets the
    state at an epoch's start, ends with other parameters."""
    data = streams()
    reference, _, _ = hand_tbptt("srn", data, 7, 3, 0.01, seed=4, **change)
    net = model("srn", seed=4)
    Trainer(TrainConfig(epochs=3, lr=0.01, tbptt=7, seed=4, **QUIET)).fit(net, data)
    assert not torch.equal(net.recurrent.cells[0].weight_hh,
                           reference.recurrent.cells[0].weight_hh)


# 5 chunks per epoch: checkpoints mid-stream at steps 9 and 12, at an epoch's end at 10.
@pytest.mark.parametrize("crash_step, eval_every", [(10, 3), (13, 3), (12, 5)])
def test_stateful_resume_is_bit_identical(tmp_path, crash_step, eval_every):
    train, dev = streams(seed=0), streams(n=2, seed=1)
    config = TrainConfig(epochs=3, lr=0.01, tbptt=10, eval_every=eval_every, seed=2, **QUIET)
    reference = model("lstm", seed=2)
    ref = Trainer(config).fit(reference, train, dev, out_dir=tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, callbacks=[CrashAt(crash_step)]).fit(
            model("lstm", seed=2), train, dev, out_dir=tmp_path / "run")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    if last["batch_in_epoch"] % 5:  # mid-stream: the carried state is in the checkpoint
        assert last["carried"] is not None and len(last["carried"]) == 2
    resumed_model = model("lstm", seed=99)
    resumed = Trainer(config).fit(resumed_model, train, dev, out_dir=tmp_path / "run",
                                  resume=True)
    assert resumed.resumed_from_step == last["step"]
    for ours, theirs in zip(resumed_model.state_dict().values(),
                            reference.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs)
    assert resumed.history == ref.history
    assert read_csv(tmp_path / "run" / "metrics.csv") == read_csv(tmp_path / "ref" / "metrics.csv")


def test_stateful_metrics_score_dev_along_its_streams(tmp_path):
    train, dev = streams(seed=0), streams(n=2, seed=1)
    config = TrainConfig(epochs=30, lr=0.02, tbptt=10, seed=0, **QUIET)
    net = model("lstm")
    trainer = Trainer(config)
    result = trainer.fit(net, train, dev, out_dir=tmp_path)
    rows = read_csv(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["step", "epoch", "train_loss", "train_mse", "dev_loss", "dev_mse",
                             "dev_mse_fresh"]
    last = result.history[-1]
    # Carried along the stream, the state knows where in the wave it is; fresh at every
    # chunk it must guess at each chunk's first steps.
    assert last["dev_mse"] < last["dev_mse_fresh"]
    scores = trainer.evaluate(net, dev)
    outputs, _ = trainer.predict_stream(net, dev.inputs)
    assert scores["mse"] == pytest.approx(float(F.mse_loss(outputs, dev.targets)), rel=1e-5)
    assert math.isfinite(result.best_dev_metric)


def test_streams_need_per_step_targets():
    data = SplitData(torch.zeros(3, 10, 1), torch.zeros(3, 1))
    with pytest.raises(RnnlabError, match="target at every step"):
        Trainer(TrainConfig(tbptt=5, **QUIET)).fit(model(), data)
