"""Loggers: TensorBoard scalars equal metrics.csv; one line per evaluation; a user logger."""

from __future__ import annotations

import io

import pytest

from rnnlab.errors import RnnlabError
from rnnlab.io import read_csv
from rnnlab.models import model_config_for
from rnnlab.tasks import get_task
from rnnlab.train import TrainConfig, Trainer, seeded_model
from rnnlab.train.loggers import LineLogger, Logger, TensorBoardLogger, make_logger

CONFIG = TrainConfig(epochs=2, batch_size=16, lr=5e-3, eval_every=10, seed=0, progress="off")


def _fit(tmp_path, callbacks):
    task = get_task("digitsum", length=5, k_train=1, k_dev=1, k_test=1)
    splits = task.splits(seed=0)
    model = seeded_model(model_config_for(task.spec, cell="gru", hidden_size=8, embedding_dim=4), 0)
    return Trainer(CONFIG, callbacks=callbacks).fit(
        model, splits["train"], splits["dev"], test=splits["test"], out_dir=tmp_path / "run")


def test_tensorboard_scalars_equal_metrics_csv(tmp_path):
    pytest.importorskip("tensorboard")  # the dev extra installs it, so CI runs this
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _fit(tmp_path, [TensorBoardLogger(tmp_path / "tb")])
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    dev = {e.step: e.value for e in events.Scalars("dev/accuracy")}
    assert sorted(dev) == [int(r["step"]) for r in rows]
    for row in rows:
        assert dev[int(row["step"])] == pytest.approx(float(row["dev_accuracy"]), abs=1e-5)
    test = events.Scalars("test/accuracy")
    assert len(test) == 1 and test[0].value == pytest.approx(result.test["accuracy"], abs=1e-6)
    assert "config" in " ".join(events.Tags()["tensors"])


def test_line_logger_prints_one_line_per_evaluation(tmp_path):
    stream = io.StringIO()
    _fit(tmp_path, [LineLogger(stream)])
    lines = stream.getvalue().splitlines()
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert len(lines) == len(rows) + 1  # every evaluation, then the test scores
    assert lines[0].startswith(f"step {rows[0]['step']}/") and "dev_accuracy" in lines[0]
    assert "test_accuracy" in lines[-1]


def test_a_user_logger_is_a_few_lines(tmp_path):
    class Collect(Logger):
        def __init__(self):
            self.params, self.seen, self.closed = {}, [], False

        def log_hyperparams(self, params):
            self.params = params

        def log_metrics(self, metrics, step):
            self.seen.append((step, metrics))

        def finalize(self):
            self.closed = True

    logger = Collect()
    _fit(tmp_path, [logger])
    assert logger.params["lr"] == CONFIG.lr and logger.closed
    steps = [step for step, metrics in logger.seen if "dev_loss" in metrics]
    assert steps == [int(r["step"]) for r in read_csv(tmp_path / "run" / "metrics.csv")]


def test_make_logger_names():
    assert make_logger("csv", "x") is None
    with pytest.raises(RnnlabError, match="known loggers: csv, tensorboard"):
        make_logger("wandb", "x")
    with pytest.raises(RnnlabError, match="output folder"):
        make_logger("tensorboard", None)


def test_train_cli_logs_to_tensorboard_and_prints_lines_when_piped(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from rnnlab.cli import main

    out = tmp_path / "run"
    assert main(["train", "digitsum", "--length", "5", "--hidden", "8", "--embedding", "4",
                 "--epochs", "1", "--eval-every", "20", "--logger", "tensorboard",
                 "--out", str(out)]) == 0
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    err = capsys.readouterr().err
    rows = read_csv(out / "metrics.csv")
    step_lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert len(step_lines) == len(rows) + 1
