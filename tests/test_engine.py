"""The engine against the ordinary trainer: same parameters, metrics, files and results.

Every comparison trains a few hundred steps (300 examples in batches of 8, so each
epoch ends with a short batch of 4) where float32 rounding has not yet been
amplified by the chaos of training; the tolerance is a few float32 ulps of growth.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rnnlab.engine import Job, get_backend, train_population
from rnnlab.engine.layout import Shape, flatten, unflatten
from rnnlab.errors import RnnlabError
from rnnlab.io import read_csv
from rnnlab.models import ModelConfig, model_config_for
from rnnlab.tasks.digitsum import DigitSum
from rnnlab.train import TrainConfig, Trainer, load_checkpoint, seeded_model

ATOL = 2e-5
BACKENDS = ["native", "torch"]


def native_available() -> bool:
    try:
        get_backend("native")
    except RnnlabError:
        return False
    return True


def backend_param(name: str):
    marks = [] if name != "native" or native_available() else [
        pytest.mark.skip(reason="no C compiler for the native kernel")]
    return pytest.param(name, marks=marks)


def make_jobs(tmp: Path | None, cell: str, specs, **config) -> list[Job]:
    jobs = []
    for i, spec in enumerate(specs):
        length, seed, lr = spec[:3]
        extra = spec[3] if len(spec) > 3 else {}
        task = DigitSum(length=length)
        splits = task.splits(seed)
        model_config = model_config_for(task.spec, cell=cell, init="torch",
                                        **extra.pop("model", {}))
        base = dict(epochs=5, batch_size=8, lr=lr, eval_every=40, seed=seed, progress="off")
        train_config = TrainConfig(**{**base, **config, **extra})
        jobs.append(Job(splits["train"], splits["dev"], model_config, train_config,
                        test=splits["test"], out_dir=None if tmp is None else tmp / f"job{i}",
                        name=f"job{i}"))
    return jobs


def train_alone(job: Job, out_dir: Path | None):
    model = seeded_model(job.model_config, job.train_config.seed)
    result = Trainer(job.train_config).fit(model, job.train, job.dev, job.test, out_dir=out_dir)
    return result, model


def assert_same_run(engine_result, trainer_result) -> None:
    assert engine_result.steps == trainer_result.steps
    assert engine_result.epochs == trainer_result.epochs
    assert engine_result.best_step == trainer_result.best_step
    assert engine_result.best_dev_metric == pytest.approx(trainer_result.best_dev_metric, abs=1e-9)
    assert engine_result.stopped_early == trainer_result.stopped_early
    assert len(engine_result.history) == len(trainer_result.history)
    for ours, theirs in zip(engine_result.history, trainer_result.history, strict=True):
        assert ours.keys() == theirs.keys()
        assert ours["step"] == theirs["step"] and ours["epoch"] == theirs["epoch"]
        for key in ("train_loss", "dev_loss", "dev_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], abs=ATOL), key
    assert engine_result.test.keys() == trainer_result.test.keys()
    assert engine_result.test["accuracy"] == pytest.approx(trainer_result.test["accuracy"],
                                                           abs=1e-9)
    assert engine_result.test["loss"] == pytest.approx(trainer_result.test["loss"], abs=ATOL)


def assert_same_tensors(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=ATOL, rtol=0, msg=key)


def assert_same_checkpoint(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    assert_same_tensors(ours["model"], theirs["model"])
    if theirs["best_model"] is not None:
        assert_same_tensors(ours["best_model"], theirs["best_model"])
    assert ours["optimizer"]["param_groups"] == theirs["optimizer"]["param_groups"]
    assert ours["optimizer"]["state"].keys() == theirs["optimizer"]["state"].keys()
    for index, state in theirs["optimizer"]["state"].items():
        assert_same_tensors(ours["optimizer"]["state"][index], state)
    for key in ("step", "epoch", "batch_in_epoch", "best_step", "last_eval_step",
                "finished", "stopped_early", "n_train", "metric", "train_config", "meta",
                "callbacks", "kind", "format", "version"):
        assert ours[key] == theirs[key], key
    assert ours["best_score"] == pytest.approx(theirs["best_score"], abs=1e-9)
    assert torch.equal(ours["data_generator"], theirs["data_generator"])
    assert torch.equal(ours["order"], theirs["order"])
    assert torch.equal(ours["rng"]["torch"], theirs["rng"]["torch"])
    assert ours["rng"]["python"] == theirs["rng"]["python"]


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
@pytest.mark.parametrize("cell", ["srn", "lstm", "gru", "residual-srn"])
def test_engine_matches_trainer(tmp_path, backend, cell):
    # Different lengths, seeds and learning rates; one job clips its gradient norm.
    specs = [(5, 0, 1e-3), (9, 1, 3e-3, {"clip_norm": 0.5}), (7, 2, 2e-3)]
    if backend == "torch":  # lock-step groups need one shape: same length
        specs = [(7, 0, 1e-3), (7, 1, 3e-3, {"clip_norm": 0.5}), (7, 2, 2e-3)]
    jobs = make_jobs(tmp_path / "engine", cell, specs)
    results = train_population(jobs, backend=backend)
    for i, job in enumerate(jobs):
        alone, _ = train_alone(job, tmp_path / "alone" / f"job{i}")
        assert_same_run(results[i], alone)
        ours, theirs = Path(job.out_dir), tmp_path / "alone" / f"job{i}"
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
        our_rows, their_rows = read_csv(ours / "metrics.csv"), read_csv(theirs / "metrics.csv")
        assert list(our_rows[0]) == list(their_rows[0]) == [
            "step", "epoch", "train_loss", "dev_loss", "dev_accuracy"]
        assert [r["step"] for r in our_rows] == [r["step"] for r in their_rows]
        for name in ("best.pt", "last.pt"):
            assert_same_checkpoint(load_checkpoint(ours / name), load_checkpoint(theirs / name))


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_sgd_clipping_weight_decay_and_early_stop_match_trainer(backend):
    # SGD with momentum, every kind of clipping, weight decay, sum reduction, early
    # stopping, a hidden size that is not a multiple of the kernel's vector width.
    config = dict(optimizer="sgd", momentum=0.9, weight_decay=1e-3, clip_value=0.05,
                  clip_per_param=0.5, clip_norm=1.0, reduction="sum", eval_every=25,
                  early_stop_patience=2, restore_best=True)
    specs = [(6, 3, 0.01, {"model": {"hidden_size": 20, "embedding_dim": 12}}),
             (6, 4, 0.005, {"model": {"hidden_size": 20, "embedding_dim": 12},
                            "shuffle": False})]
    jobs = make_jobs(None, "lstm", specs, **config)
    results = train_population(jobs, backend=backend)
    for job, ours in zip(jobs, results, strict=True):
        theirs, _ = train_alone(job, None)
        assert_same_run(ours, theirs)


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_members_are_independent(backend):
    """Changing one member's learning rate changes nothing about the others."""
    specs = [(6, 0, 1e-3), (6, 1, 1e-3), (6, 2, 1e-3)]
    changed = [(6, 0, 1e-3), (6, 1, 5e-2), (6, 2, 1e-3)]
    first = train_population(make_jobs(None, "srn", specs, epochs=2), backend=backend)
    second = train_population(make_jobs(None, "srn", changed, epochs=2), backend=backend)
    assert first[0].history == second[0].history
    assert first[2].history == second[2].history
    assert first[1].history != second[1].history


def test_layout_round_trip_with_padding():
    shape = Shape("gru", vocab=7, embed=10, hidden=20, classes=5, length=4)
    tensors = {name: torch.randn(size) for name, size in shape.torch_shapes().items()}
    flat = flatten(shape, tensors)
    assert flat.numel() == shape.num_params
    back = unflatten(shape, flat)
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor), name
    # padding is zero, so the padded vector holds exactly the real numbers plus zeros
    assert int((flat != 0).sum()) == sum(t.numel() for t in tensors.values())


@pytest.mark.parametrize("change, words", [
    ({"bidirectional": True}, "bidirectional"),
    ({"num_layers": 2}, "stacked"),
    ({"head": "tag"}, "head"),
])
def test_unsupported_models_raise_with_advice(change, words):
    task = DigitSum(length=5)
    splits = task.splits(0)
    config = ModelConfig(**{**model_config_for(task.spec).asdict(), **change})
    job = Job(splits["train"], splits["dev"], config, TrainConfig(epochs=1))
    with pytest.raises(RnnlabError, match=words) as err:
        train_population([job])
    assert "--engine loop" in str(err.value)


def test_nonfinite_loss_stops_with_the_trainers_message(tmp_path):
    # A relu SRN under plain SGD with lr 10 blows up within a few steps.
    specs = [(5, 0, 10.0, {"model": {"nonlinearity": "relu"}}), (5, 1, 1e-3)]
    jobs = make_jobs(tmp_path / "engine", "srn", specs, epochs=3, optimizer="sgd", eval_every=2)
    with pytest.raises(RnnlabError) as ours:
        train_population(jobs)
    with pytest.raises(RnnlabError) as theirs:
        train_alone(jobs[0], tmp_path / "alone")
    expected = str(theirs.value).replace(str(tmp_path / "alone"), str(tmp_path / "engine" / "job0"))
    assert str(ours.value) == "job0: " + expected
    assert "loss became" in expected
    # the healthy job finished and wrote its files anyway
    assert (tmp_path / "engine" / "job1" / "best.pt").is_file()
    rows = read_csv(tmp_path / "engine" / "job1" / "metrics.csv")
    assert math.isfinite(float(rows[-1]["dev_loss"]))


@pytest.fixture
def fresh_kernel_cache(monkeypatch):
    from rnnlab.engine import native

    monkeypatch.setattr(native, "_CACHE", {})
    monkeypatch.setattr(native, "_ERRORS", {})
    monkeypatch.delenv("RNNLAB_ENGINE_BACKEND", raising=False)
    return native


def test_unwritable_kernel_cache_still_builds_the_kernel(tmp_path, monkeypatch,
                                                         fresh_kernel_cache):
    native = fresh_kernel_cache
    if native._compiler() is None:
        pytest.skip("no C compiler")
    blocker = tmp_path / "file"
    blocker.write_text("x\n")
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(blocker / "cache"))
    assert native.load() is not None, native.why_unavailable()
    assert get_backend("auto").name == "native"


def test_no_compiler_falls_back_to_torch(monkeypatch, fresh_kernel_cache):
    monkeypatch.setattr(fresh_kernel_cache, "_compiler", lambda: None)
    assert fresh_kernel_cache.load() is None
    assert "no C compiler" in fresh_kernel_cache.why_unavailable()
    assert get_backend("auto").name == "torch"
    with pytest.raises(RnnlabError, match="not available"):
        get_backend("native")
