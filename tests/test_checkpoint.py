"""Checkpoints load without pickled code, hold everything to resume, and fail clearly."""

from __future__ import annotations

import pytest
import torch

from rnnlab.errors import RnnlabError
from rnnlab.models import ModelConfig
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, Trainer, find_checkpoint, load_checkpoint, seeded_model
from rnnlab.train.checkpoint import save_checkpoint

KEYS = {"format", "version", "digest", "kind", "model", "optimizer", "best_model", "rng",
        "data_generator", "order", "n_train", "step", "epoch", "batch_in_epoch", "best_score",
        "best_step", "last_eval_step", "stopped_early", "finished", "seconds", "metric",
        "history", "train_config", "meta", "callbacks", "carried"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    splits = get_task("digitsum", length=4).splits(0)
    model = seeded_model(ModelConfig(cell="lstm", hidden_size=8, embedding_dim=4,
                                     vocab_size=10, num_outputs=19), 0)
    config = TrainConfig(epochs=2, batch_size=32, eval_every=5, shuffle=True,
                         early_stop_patience=10, progress="off")
    Trainer(config).fit(model, splits["train"], splits["dev"], out_dir=out,
                        meta={"task": "digitsum", "task_params": {"length": 4}})
    return out


def test_checkpoints_load_with_weights_only(run_dir):
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / name, weights_only=True)
        assert set(state) == KEYS
        assert state["format"] == "rnnlab-checkpoint"
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["kind"] == "last" and last["finished"] is True
    assert last["step"] == 20 and last["epoch"] == 2 and last["batch_in_epoch"] == 0
    assert last["train_config"]["batch_size"] == 32  # configs are plain dicts
    assert last["meta"]["model_config"]["cell"] == "lstm"
    assert last["meta"]["task"] == "digitsum"
    assert isinstance(last["data_generator"], torch.Tensor)
    assert sorted(last["order"].tolist()) == list(range(300))
    assert set(last["rng"]) == {"torch", "python", "numpy"}
    assert "exp_avg" in last["optimizer"]["state"][0]
    assert last["callbacks"] == {"EarlyStopping": {"bad_evaluations": last["callbacks"]
                                                   ["EarlyStopping"]["bad_evaluations"]}}
    assert last["best_model"].keys() == last["model"].keys()


def test_no_temporary_files_are_left(run_dir):
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "last.pt", "metrics.csv"]


def test_corrupt_or_missing_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(RnnlabError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "last.pt")
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RnnlabError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "last.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(RnnlabError, match="is not an rnnlab checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(RnnlabError, match="no run folder"):
        find_checkpoint(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RnnlabError, match="holds no checkpoint"):
        find_checkpoint(tmp_path / "empty")


class Custom:
    """Any class: a checkpoint holding one would run code on load."""


def test_a_pickled_object_is_refused(tmp_path):
    save_checkpoint({"model": {}, "thing": Custom()}, tmp_path / "evil.pt")
    with pytest.raises(RnnlabError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_find_checkpoint_prefers_best_then_last(run_dir, tmp_path):
    assert find_checkpoint(run_dir).name == "best.pt"
    assert find_checkpoint(run_dir, prefer="last.pt").name == "last.pt"
    (tmp_path / "last.pt").write_bytes((run_dir / "last.pt").read_bytes())
    assert find_checkpoint(tmp_path).name == "last.pt"


@pytest.mark.parametrize("policy, files", [
    ("last", ["last.pt", "metrics.csv"]),
    ("none", ["metrics.csv"]),
])
def test_checkpoint_policy(tmp_path, policy, files):
    splits = get_task("digitsum", length=4).splits(0)
    model = seeded_model(ModelConfig(cell="srn", hidden_size=4, embedding_dim=4,
                                     vocab_size=10, num_outputs=19), 0)
    config = TrainConfig(epochs=1, batch_size=64, checkpoints=policy, progress="off")
    Trainer(config).fit(model, splits["train"], splits["dev"], out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == files
