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

from rnnlab.engine import Job, describe, get_backend, iter_population, train_population
from rnnlab.engine.layout import Shape, flatten, unflatten
from rnnlab.errors import NonFiniteError, RnnlabError
from rnnlab.io import read_csv
from rnnlab.models import ModelConfig, model_config_for
from rnnlab.tasks.digitsum import DigitSum
from rnnlab.train import TrainConfig, Trainer, load_checkpoint, seeded_model

ATOL = 2e-5
BACKENDS = ["kernel", "torch"]


def native_available() -> bool:
    try:
        get_backend("kernel")
    except RnnlabError:
        return False
    return True


def backend_param(name: str):
    marks = [] if name != "kernel" or native_available() else [
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
    metric = trainer_result.metric
    # accuracy counts whole answers (equal, or the float noise flipped one); MSE is a float
    exact = 1e-9 if metric == "accuracy" else ATOL
    assert engine_result.metric == metric
    assert engine_result.steps == trainer_result.steps
    assert engine_result.epochs == trainer_result.epochs
    assert engine_result.best_step == trainer_result.best_step
    assert engine_result.best_dev_metric == pytest.approx(trainer_result.best_dev_metric,
                                                          abs=exact)
    assert engine_result.stopped_early == trainer_result.stopped_early
    assert len(engine_result.history) == len(trainer_result.history)
    for ours, theirs in zip(engine_result.history, trainer_result.history, strict=True):
        assert ours.keys() == theirs.keys()
        assert ours["step"] == theirs["step"] and ours["epoch"] == theirs["epoch"]
        for key in ("train_loss", "dev_loss", f"dev_{metric}"):
            assert ours[key] == pytest.approx(theirs[key], abs=ATOL), key
    assert engine_result.test.keys() == trainer_result.test.keys()
    assert engine_result.test[metric] == pytest.approx(trainer_result.test[metric], abs=exact)
    assert engine_result.test["loss"] == pytest.approx(trainer_result.test["loss"], abs=ATOL)


def assert_same_tensors(ours: dict, theirs: dict, rtol: float = 0.0) -> None:
    assert list(ours) == list(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=ATOL, rtol=rtol, msg=key)


def assert_same_checkpoint(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    assert_same_tensors(ours["model"], theirs["model"])
    if theirs["best_model"] is not None:
        assert_same_tensors(ours["best_model"], theirs["best_model"])
    assert ours["optimizer"]["param_groups"] == theirs["optimizer"]["param_groups"]
    assert ours["optimizer"]["state"].keys() == theirs["optimizer"]["state"].keys()
    # Adam's moments hold squared gradients: summed in another order, they differ by a
    # few float32 ulps relative to their size (up to 1e-4 of it on regression targets)
    for index, state in theirs["optimizer"]["state"].items():
        assert_same_tensors(ours["optimizer"]["state"][index], state, rtol=1e-4)
    for key in ("step", "epoch", "batch_in_epoch", "best_step", "last_eval_step",
                "finished", "stopped_early", "n_train", "metric", "train_config", "meta",
                "callbacks", "kind", "format", "version"):
        assert ours[key] == theirs[key], key
    exact = 1e-9 if theirs["metric"] == "accuracy" else ATOL
    assert ours["best_score"] == pytest.approx(theirs["best_score"], abs=exact)
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
    ({"head": "regress"}, "head"),
])
def test_unsupported_models_raise_with_advice(change, words):
    task = DigitSum(length=5)
    splits = task.splits(0)
    config = ModelConfig(**{**model_config_for(task.spec).asdict(), **change})
    job = Job(splits["train"], splits["dev"], config, TrainConfig(epochs=1))
    with pytest.raises(RnnlabError, match=words) as err:
        train_population([job])
    assert "--engine loop" in str(err.value)


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_nonfinite_loss_fails_that_job_with_the_trainers_message(tmp_path, backend):
    # A relu SRN under plain SGD with lr 10 blows up within a few steps.
    specs = [(5, 0, 10.0, {"model": {"nonlinearity": "relu"}}), (5, 1, 1e-3)]
    jobs = make_jobs(tmp_path / "engine", "srn", specs, epochs=3, optimizer="sgd", eval_every=2)
    failed, healthy = train_population(jobs, backend=backend)
    with pytest.raises(NonFiniteError) as theirs:
        train_alone(jobs[0], tmp_path / "alone")
    assert isinstance(failed, NonFiniteError)
    expected = str(theirs.value).replace(str(tmp_path / "alone"), str(tmp_path / "engine" / "job0"))
    assert str(failed) == "job0: " + expected
    assert "loss became" in expected and failed.step == theirs.value.step
    # the failed job's files hold its last finite evaluation; the healthy job finished
    for name in ("best.pt", "last.pt"):
        model = load_checkpoint(tmp_path / "engine" / "job0" / name)["model"]
        assert all(torch.isfinite(v).all() for v in model.values())
    assert healthy.steps == jobs[1].train_config.epochs * 38
    assert (tmp_path / "engine" / "job1" / "best.pt").is_file()
    rows = read_csv(tmp_path / "engine" / "job1" / "metrics.csv")
    assert math.isfinite(float(rows[-1]["dev_loss"]))


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_huge_learning_rate_trains_like_the_trainer(tmp_path, backend):
    """Issue 14: SGD at lr 1e8 saturates every gate. The trainer trains all four cells to
    finite (huge) parameters; the engine must too, not fail where PyTorch's saturated
    sigmoid and tanh give exactly zero derivatives."""
    for cell in ("srn", "lstm", "gru", "residual-srn"):
        spec = (5, 0, 1e8, {"model": {"hidden_size": 16, "embedding_dim": 8}})
        jobs = make_jobs(tmp_path / cell, cell, [spec], epochs=1, optimizer="sgd",
                         eval_every=5)
        (ours,) = train_population(jobs, backend=backend)
        theirs, model = train_alone(jobs[0], None)
        assert not isinstance(ours, NonFiniteError), str(ours)
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert ours.steps == theirs.steps
        assert ours.test["accuracy"] == theirs.test["accuracy"], cell
        assert [r["dev_accuracy"] for r in ours.history] == \
            [r["dev_accuracy"] for r in theirs.history], cell
        best = load_checkpoint(Path(jobs[0].out_dir) / "best.pt")["model"]
        assert all(torch.isfinite(v).all() for v in best.values())


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_nonfinite_parameters_fail_that_job_only(tmp_path, backend):
    # SGD at lr 3e38 on summed gradients overflows the parameters on the first update,
    # after a finite loss.
    specs = [(5, 0, 3e38), (5, 1, 1e-3)]
    jobs = make_jobs(tmp_path, "srn", specs, epochs=1, optimizer="sgd", eval_every=10,
                     reduction="sum")
    results = list(iter_population(jobs, backend=backend))
    by_index = dict(results)
    assert sorted(by_index) == [0, 1]
    failed = by_index[0]
    assert isinstance(failed, NonFiniteError)
    assert "job0: the parameters became non-finite at step 1 (epoch 1)" in str(failed)
    assert failed.step == 1
    assert not (tmp_path / "job0" / "best.pt").exists()  # it failed before any evaluation
    assert by_index[1].steps == 38 and math.isfinite(by_index[1].best_dev_metric)


@pytest.fixture
def fresh_kernel_cache(monkeypatch, tmp_path):
    from rnnlab.engine import backends, calibrate, native

    monkeypatch.setattr(native, "_CACHE", {})
    monkeypatch.setattr(native, "_ERRORS", {})
    monkeypatch.setattr(native, "_BUILD", {})
    monkeypatch.setattr(backends, "_SAID", set())
    monkeypatch.setattr(calibrate, "_SPEEDS", {})
    monkeypatch.delenv("RNNLAB_ENGINE_BACKEND", raising=False)
    monkeypatch.delenv("RNNLAB_KERNEL_MARCH", raising=False)
    monkeypatch.setenv("RNNLAB_CACHE_DIR", str(tmp_path / "kernel-cache"))
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
    assert get_backend("auto").name == "kernel"
    assert describe()["library"] == ""  # built for this process only


def test_no_compiler_falls_back_to_torch(monkeypatch, fresh_kernel_cache, capsys):
    monkeypatch.setattr(fresh_kernel_cache, "_compiler", lambda: None)
    assert fresh_kernel_cache.load() is None
    assert "no C compiler" in fresh_kernel_cache.why_unavailable()
    assert get_backend("auto").name == "torch"
    assert get_backend("auto").name == "torch"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "could not be built (no C compiler" in lines[0]
    assert "install gcc" in lines[0].lower()
    info = describe()
    assert info["backend"] == "torch" and "no C compiler" in info["reason"]
    with pytest.raises(RnnlabError, match="not available"):
        get_backend("kernel")


def test_a_failed_build_says_why_and_leaves_no_empty_folder(tmp_path, monkeypatch,
                                                            fresh_kernel_cache, capsys):
    monkeypatch.setenv("CC", "/bin/false")
    cache = tmp_path / "kernel-cache"
    assert get_backend("auto").name == "torch"
    assert "/bin/false failed" in capsys.readouterr().err
    assert not cache.exists()
    # the user can require the kernel: one clear error instead of the fallback
    monkeypatch.setenv("RNNLAB_ENGINE_BACKEND", "kernel")
    with pytest.raises(RnnlabError, match="C kernel is not available .*/bin/false"):
        get_backend("auto")
    assert describe()["backend"] is None
    monkeypatch.setenv("RNNLAB_ENGINE_BACKEND", "fastest")
    with pytest.raises(RnnlabError, match="RNNLAB_ENGINE_BACKEND='fastest'"):
        get_backend("auto")
    monkeypatch.setenv("RNNLAB_ENGINE_BACKEND", "torch")
    assert get_backend("auto").name == "torch"
    assert capsys.readouterr().err == ""  # chosen, not fallen back to: nothing to say


def test_a_kernel_measured_slower_is_not_chosen_silently(monkeypatch, fresh_kernel_cache,
                                                         capsys):
    from rnnlab.engine import calibrate

    if fresh_kernel_cache.load() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(calibrate, "speeds", lambda: (2.0, 1.0))
    assert get_backend("auto").name == "torch"
    err = capsys.readouterr().err
    assert "measured slower than the torch backend" in err and "RNNLAB_ENGINE_BACKEND=kernel" in err
    assert describe()["reason"].startswith("the C kernel")
    assert get_backend("kernel").name == "kernel"  # asked for by name: no measuring


def test_describe_measures_once_and_keeps_the_measurement(fresh_kernel_cache):
    from rnnlab.engine import calibrate

    if fresh_kernel_cache.load() is None:
        pytest.skip("no C compiler")
    info = describe()
    assert info["backend"] == "kernel"
    # the kernel's measured speed is the one it was chosen by, and it is far ahead
    assert info["kernel_ms_per_step"] * 3 < info["torch_ms_per_step"]
    saved = Path(info["library"]).with_name(calibrate.FILE)
    assert saved.is_file()
    calibrate._SPEEDS.clear()
    assert calibrate.speeds() == (info["kernel_ms_per_step"], info["torch_ms_per_step"])


def test_the_old_backend_name_still_chooses_the_kernel(monkeypatch):
    """'native' named the kernel backend before it was renamed 'kernel' (torch.nn's fused
    layers are Recurrent(backend='native')); the old spelling keeps working."""
    from rnnlab.engine.backends import choose

    assert choose("native", quiet=True)["requested"] == "kernel"
    monkeypatch.setenv("RNNLAB_ENGINE_BACKEND", "native")
    assert choose("auto", quiet=True)["requested"] == "kernel"
