"""Nothing lost when two runs share a folder, a disk fills or a number explodes.

One fast test (at least) per class of benchmarks/torture.py: concurrency, failed
runs, disk full and read-only folders, bad inputs, hostile checkpoints, leftovers
of a killed write.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from rnnlab.cli import main
from rnnlab.errors import NonFiniteError, RnnlabError
from rnnlab.experiments import MemoryConfig, RunResult, load_results, run_memory
from rnnlab.experiments import memory as memory_mod
from rnnlab.experiments.results import record_result
from rnnlab.io import FolderLock, atomic_write_text, clean_temporaries
from rnnlab.train.checkpoint import digest, load_checkpoint, save_checkpoint

TINY = MemoryConfig(cells=("srn", "lstm"), lengths=(5,), seeds=1, k_train=1, k_dev=1,
                    k_test=1, hidden_size=4, embedding_dim=4, epochs=1, eval_every=2)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("rnnlab: error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- concurrency -------------------------------------------------------------------------
HOLD = textwrap.dedent("""
    import sys, time
    from rnnlab.io import FolderLock
    with FolderLock(sys.argv[1], command="rnnlab memory --holder"):
        print("locked", flush=True)
        time.sleep(60)
""")


CLI = "import sys; from rnnlab.cli import main; sys.exit(main())"


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        # a real second process, through the CLI
        second = subprocess.run([sys.executable, "-c", CLI, "memory", "--out",
                                 str(tmp_path), "--cells", "srn", "--lengths", "5"],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"pid {holder.pid}" in second.stderr and "rnnlab memory --holder" in second.stderr
        assert "in use by another rnnlab process" in second.stderr
        # and in this process too, for train
        assert main(["train", "digitsum", "--out", str(tmp_path), "--quiet"]) == 2
        assert "in use" in one_line_error(capsys)
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the lock with the killed process: the folder is free again.
    with FolderLock(tmp_path):
        pass
    assert not (tmp_path / "results.csv").exists()


def test_the_lock_is_released_and_its_file_removed(tmp_path):
    with FolderLock(tmp_path) as lock:
        assert lock.path.exists()
        with pytest.raises(RnnlabError, match="in use"):
            FolderLock(tmp_path).acquire()  # a second open file description conflicts too
    assert not lock.path.exists()
    with FolderLock(tmp_path):
        pass


# --- failed runs -------------------------------------------------------------------------
def test_a_real_nan_in_the_loop_engine_is_a_failed_row_and_the_others_go_on(tmp_path):
    # SGD at lr 1e38 without clipping overflows the loss within two steps for both cells.
    bad = MemoryConfig(**{**TINY.__dict__, "optimizer": "sgd", "lr": 1e38, "clip": 0.0,
                          "engine": "loop", "cells": ("srn", "gru")})
    outcome = run_memory(bad, tmp_path, progress=False)
    rows = list(load_results(tmp_path / "results.csv").values())
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("loss became" in r["reason"] and r["test_score"] is None for r in rows)
    assert outcome.failed == 2 and outcome.summary["runs"]["failed"] == 2
    report = outcome.report.read_text()
    assert "failed-runs" in report and report.count("<td class='l failed'>failed</td>") == 2
    assert outcome.summary["cells"]["srn"]["horizon"] is None
    assert "--retry-failed" in outcome.summary["cells"]["srn"]["horizon_text"]


def _fast_with_one_failure(monkeypatch, fail_cell: str) -> list[str]:
    """The fast runner against an iter_population that hands back a NonFiniteError for
    ``fail_cell`` (the engine's contract) and a finished result for the others."""
    from rnnlab.train import FitResult

    calls: list[str] = []

    def fake_iter(jobs, **kwargs):
        for index, job in enumerate(jobs):
            calls.append(job.name)
            if job.model_config.cell == fail_cell:
                yield index, NonFiniteError(f"{job.name}: loss became nan at step 3", step=3)
            else:
                yield index, FitResult(metric="accuracy", best_dev_metric=0.5, best_step=2,
                                       steps=2, epochs=1, seconds=0.1, stopped_early=False,
                                       resumed_from_step=None, test={"accuracy": 0.25},
                                       history=[])

    monkeypatch.setattr("rnnlab.engine.iter_population", fake_iter)
    return calls


def test_the_fast_engine_failure_is_a_row_and_retry_failed_trains_it_again(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(memory_mod, "task_chance", lambda config: 0.1)
    calls = _fast_with_one_failure(monkeypatch, "lstm")
    first = run_memory(TINY, tmp_path, progress=False)
    rows = load_results(tmp_path / "results.csv")
    by_cell = {r["cell"]: r for r in rows.values()}
    assert by_cell["lstm"]["status"] == "failed" and by_cell["lstm"]["steps"] == 2
    assert by_cell["srn"]["status"] == "ok" and by_cell["srn"]["test_score"] == 0.25
    assert first.summary["cells"]["srn"]["lengths"][0]["mean"] == 0.25
    assert first.summary["cells"]["lstm"]["lengths"][0]["mean"] is None  # never 0
    # A plain rerun skips the failed run as done ...
    calls.clear()
    again = run_memory(TINY, tmp_path, progress=False)
    assert calls == [] and again.trained == 0
    # ... --retry-failed trains only it, and its new row replaces the failed one.
    calls_cli = _fast_with_one_failure(monkeypatch, "none")
    assert main(["memory", "--out", str(tmp_path), "--cells", "srn,lstm", "--lengths", "5",
                 "--seeds", "1", "--k-train", "1", "--k-dev", "1", "--k-test", "1",
                 "--hidden", "4", "--embedding", "4", "--epochs", "1", "--eval-every", "2",
                 "--retry-failed"]) == 0
    assert len(calls_cli) == 1 and calls_cli[0].startswith("lstm")
    rows = load_results(tmp_path / "results.csv")
    assert len(rows) == 2 and {r["status"] for r in rows.values()} == {"ok"}
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 3


def test_a_failed_seed_ends_the_horizon_and_is_left_out_of_the_mean():
    from rnnlab.experiments import summarize

    config = MemoryConfig(cells=("srn",), lengths=(5, 10, 15), seeds=2)
    rows = [{"cell": "srn", "length": n, "seed": k, "status": "ok", "best_dev_score": 1.0,
             "test_score": 1.0} for n in (5, 10, 15) for k in (0, 1)]
    rows[2] = {"cell": "srn", "length": 10, "seed": 0, "status": "failed", "reason": "nan",
               "best_dev_score": None, "test_score": None}
    cell = summarize(config, rows)["cells"]["srn"]
    assert cell["horizon"] == 5  # 15 passes, but 10 was not fully measured
    p10 = cell["lengths"][1]
    assert p10["mean"] == 1.0 and p10["n"] == 1 and p10["failed_seeds"] == [0]
    assert "at least 5 steps; 1 run at length 10 failed" in cell["horizon_text"]


# --- disk full, read-only ----------------------------------------------------------------
def test_a_full_disk_is_one_line_and_damages_nothing(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "precious\n")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RnnlabError, match="No space left on device .* nothing already saved "
                                          "was damaged"):
        atomic_write_text(target, "new\n")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporary left


def test_a_read_only_out_is_one_line(tmp_path, monkeypatch, capsys):
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".rnnlab.lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    assert main(["memory", "--out", str(tmp_path), "--cells", "srn", "--lengths", "5"]) == 2
    assert "read-only" in one_line_error(capsys)


# --- bad inputs --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["memory", "--seeds", "1000000000000"], "--seeds must be"),
    (["memory", "--lengths", "99999999999999999999"], "would need about"),
    (["memory", "--hidden", "99999999999999999999"], "would need about"),
    (["memory", "--embedding", "1000000000"], "would need about"),
    (["memory", "--clip", "inf"], "--clip-norm must be"),
    (["memory", "--lr", "nan"], "--lr must be"),
    (["train", "digitsum", "--hidden", "100000"], "would need about"),
    (["train", "digitsum", "--layers", "100000"], "would need about"),
    (["train", "digitsum", "--embedding", "1000000000"], "would need about"),
    (["train", "digitsum", "--task-param", "k_train=10000000"], "would need about"),
    (["train", "digitsum", "--length", "99999999999999999999"], "would need about"),
    (["train", "digitsum", "--lr", "1e300"], "--lr"),
])
def test_impossible_sizes_are_refused_in_one_line_before_allocating(argv, words, tmp_path,
                                                                    capsys):
    start = time.perf_counter()
    assert main([*argv, "--out", str(tmp_path / "out" / "run")]) == 2
    assert words in one_line_error(capsys)
    assert time.perf_counter() - start < 20  # refused up front, not after minutes of work
    # nothing written, not even an empty folder, nor the parent made to hold it
    assert not (tmp_path / "out").exists()


def test_digitsum_file_with_a_one_digit_row_names_file_and_line(tmp_path):
    from rnnlab.tasks.digitsum import read_file

    path = tmp_path / "train.txt"
    path.write_text("3 4 0 0\t7\n5\t5\n1 2 0 0\t3\n")
    with pytest.raises(RnnlabError, match=r"train.txt line 2: .*at least two digits"):
        read_file(path)
    path.write_text("3 4 0 0\t8\n")
    with pytest.raises(RnnlabError, match=r"line 1: label 8 is not the sum"):
        read_file(path)


# --- checkpoints -------------------------------------------------------------------------
def _state() -> dict:
    return {"kind": "last", "model": {"w": torch.arange(64, dtype=torch.float32)},
            "step": 3, "meta": {"task": "digitsum"}, "train_config": {"lr": 0.1}}


def test_flipped_bytes_in_a_checkpoint_are_refused(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "best.pt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], _state()["model"]["w"])
    data = bytearray(path.read_bytes())
    at = data.find(torch.arange(64, dtype=torch.float32).numpy().tobytes()[4:12])
    assert at > 0
    data[at + 2] ^= 0xFF  # one weight changes; the zip and the pickle stay valid
    path.write_bytes(bytes(data))
    with pytest.raises(RnnlabError, match="does not match its digest"):
        load_checkpoint(path)


def test_digest_is_order_independent_and_version_1_loads_unverified(tmp_path):
    state = {"format": "rnnlab-checkpoint", "version": 2, **_state()}
    assert digest(state) == digest(dict(reversed(list(state.items()))))
    old = {**state, "version": 1}
    torch.save(old, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["step"] == 3
    torch.save({**state, "digest": "0" * 64}, tmp_path / "forged.pt")
    with pytest.raises(RnnlabError, match="digest"):
        load_checkpoint(tmp_path / "forged.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_hostile_checkpoint_never_gets_weights_only_advice(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": "rnnlab-checkpoint", "model": Evil()}, run / "best.pt")
    assert main(["evaluate", str(run)]) == 2
    line = one_line_error(capsys)
    assert "could run code" in line and "weights_only" not in line
    (run / "best.pt").write_bytes(b"\x80\x02garbage" * 10)
    assert main(["evaluate", str(run)]) == 2
    line = one_line_error(capsys)
    assert "damaged" in line and "weights_only" not in line


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.pop("train_config"), "has no train_config"),
    (lambda s: s["meta"]["model_config"].update(wings=2), "unknown model setting(s) wings"),
])
def test_a_checkpoint_missing_pieces_is_one_line(edit, words, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "digitsum", "--length", "4", "--max-steps", "2", "--hidden", "4",
                 "--embedding", "4", "--out", str(run), "--quiet"]) == 0
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(run / name)
        edit(state)
        save_checkpoint(state, run / name)
    assert main(["evaluate", str(run)]) == 2
    assert words in one_line_error(capsys)


# --- kills -------------------------------------------------------------------------------
def test_a_sigkilled_train_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    args = ["train", "digitsum", "--length", "5", "--hidden", "8", "--embedding", "8",
            "--epochs", "6", "--eval-every", "5", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args, "--out", str(tmp_path / "k")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (tmp_path / "k" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read()  # still training: a real kill mid-run
    proc.kill()
    proc.wait()
    assert not (tmp_path / "k" / "summary.json").exists()
    assert main([*args, "--out", str(tmp_path / "k"), "--resume"]) == 0
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    assert (tmp_path / "k" / "metrics.csv").read_bytes() == \
        (tmp_path / "ref" / "metrics.csv").read_bytes()
    for name in ("best.pt", "last.pt"):
        ours, theirs = (load_checkpoint(tmp_path / run / name) for run in ("k", "ref"))
        assert ours["step"] == theirs["step"]
        for key, tensor in theirs["model"].items():
            assert torch.equal(ours["model"][key], tensor), (name, key)
    assert not list((tmp_path / "k").glob(".*.tmp"))
    assert not (tmp_path / "k" / ".rnnlab.lock").exists()


# --- leftovers of a killed write ---------------------------------------------------------
def test_a_resume_cleans_temporaries_of_a_killed_write(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "digitsum", "--length", "4", "--max-steps", "2", "--hidden", "4",
            "--embedding", "4", "--out", str(run), "--quiet"]
    assert main(args) == 0
    (run / "summary.json").unlink()  # as if killed before the end
    leftovers = [run / ".last.pt.abcd1234.tmp", run / ".metrics.csv.x_y9zz00.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    keep = run / "notes.tmp"
    keep.write_text("mine")
    assert main([*args, "--resume"]) == 0
    assert not any(p.exists() for p in leftovers) and keep.exists()


def test_clean_temporaries_removes_only_the_names_atomic_writes_make(tmp_path):
    names = [".results.csv.abc_1234.tmp", ".x.tmp", "a.b.cdefghij.tmp", ".y.ABCDEFGH.tmp"]
    for name in names:
        (tmp_path / name).write_text("")
    removed = clean_temporaries(tmp_path)
    assert [p.name for p in removed] == [".results.csv.abc_1234.tmp"]


def test_results_written_before_the_status_column_read_as_ok(tmp_path):
    # results.csv written before the status column: every row reads as ok
    (tmp_path / "results.csv").write_text(
        "cell,length,seed,best_dev_accuracy,test_accuracy,steps,seconds,engine,config_hash\n"
        "srn,5,0,0.5,0.4,10,1.0,loop,abc\n")
    row = load_results(tmp_path / "results.csv")["abc"]
    assert row["status"] == "ok" and row["test_score"] == 0.4 and row["best_dev_score"] == 0.5
    # recording a new run rewrites the file under the current column names, old scores kept
    spec = TINY.specs()[0]
    record_result(tmp_path / "results.csv", RunResult(spec, 0.9, 0.8, 5, 0.1, "fast"))
    rows = load_results(tmp_path / "results.csv")
    assert rows["abc"]["test_score"] == 0.4 and rows["abc"]["best_dev_score"] == 0.5
    assert rows[spec.config_hash]["test_score"] == 0.8
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert "test_score" in header and "test_accuracy" not in header


def test_run_result_row_keeps_the_reason_on_one_line():
    spec = TINY.specs()[0]
    row = RunResult.failed(spec, "loss became nan\nat step 3", "loop").row()
    assert row["reason"] == "loss became nan at step 3" and row["test_score"] == ""


def test_the_long_grid_warning_knows_the_kernel_is_fast(capsys, monkeypatch):
    """The full memory suite (about 1.2e13 multiply-adds) takes minutes on the kernel: no
    warning; the same grid on the loop engine, or a grid ten times larger, is warned."""
    monkeypatch.setenv("RNNLAB_WORKERS", "2")
    tasks = ("digitsum", "copy", "adding", "selective-copy", "associative-recall")
    MemoryConfig(tasks=tasks).validate()
    assert "may take hours" not in capsys.readouterr().err
    MemoryConfig(tasks=tasks, engine="loop").validate()
    assert "may take hours" in capsys.readouterr().err
    MemoryConfig(tasks=tasks, seeds=30).validate()
    assert "may take hours" in capsys.readouterr().err
