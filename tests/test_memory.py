"""The memory experiment's logic, with a fake runner instead of training.

The fake runner's accuracy is a fixed function of (cell, length, seed), so the
grid, hashing, skip-finished, summary, horizon and report can be checked
exactly and in milliseconds; real training is tested in test_memory_cli.py.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from rnnlab.errors import RnnlabError
from rnnlab.experiments import (
    MemoryConfig,
    RunResult,
    horizon_sentence,
    load_results,
    memory_horizon,
    run_memory,
    summarize,
)
from rnnlab.experiments import memory as memory_mod
from rnnlab.experiments.stats import mean_ci, t_quantile
from rnnlab.io import write_csv
from rnnlab.protocols import get_protocol

# How far back each fake cell "remembers": accuracy 0.99 up to it, 0.3 after.
REACH = {"srn": 7, "residual-srn": 22, "lstm": 100, "gru": 2}


def fake_accuracy(cell: str, length: int, seed: int) -> float:
    return (0.99 if length <= REACH[cell] else 0.3) - 0.01 * seed


class FakeRunner:
    """Yields deterministic results and writes a metrics CSV per run; can crash."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.trained: list = []
        self.crash_after = crash_after

    def __call__(self, specs, runs_dir: Path):
        for spec in specs:
            if self.crash_after is not None and len(self.trained) == self.crash_after:
                raise KeyboardInterrupt
            acc = fake_accuracy(spec.cell, spec.length, spec.seed)
            run_dir = runs_dir / spec.run_id
            rows = [{"step": s, "epoch": s // 10, "train_loss": 2.0 / s, "dev_loss": 2.5 / s,
                     "dev_accuracy": acc * s / 40} for s in (10, 20, 30, 40)]
            write_csv(run_dir / "metrics.csv", list(rows[0]), rows)
            self.trained.append(spec)
            yield RunResult(spec, best_dev_score=acc, test_score=acc, steps=40,
                            seconds=0.01, engine="fake")


@pytest.fixture(autouse=True)
def _fixed_chance(monkeypatch):
    # Keeps these tests independent of the DigitSum task (tested with real runs).
    monkeypatch.setattr(memory_mod, "task_chance", lambda config: 0.1)


SMALL = MemoryConfig(cells=("srn", "lstm"), lengths=(5, 10), seeds=2)


# --- validation --------------------------------------------------------------------------
@pytest.mark.parametrize("changes, words", [
    ({"lengths": (2, 5)}, "length must be an integer >= 3"),
    ({"cells": ("srn", "transformer")}, "unknown cell 'transformer'"),
    ({"seeds": 0}, "--seeds must be a whole number >= 1"),
    ({"threshold": 0.0}, "--threshold must be in (0, 1]"),
    ({"threshold": 1.01}, "--threshold must be in (0, 1]"),
    ({"threshold": math.nan}, "--threshold must be in (0, 1]"),
    ({"protocol": "fast"}, "unknown protocol"),
    ({"engine": "warp"}, "unknown engine"),
    ({"lengths": (5, 5)}, "lists a length twice"),
    ({"init": "ones"}, "unknown --init"),
    ({"lr": -1.0}, "--lr must be > 0"),
])
def test_bad_values_are_one_clear_error(changes, words):
    config = MemoryConfig(**{**SMALL.__dict__, **changes})
    with pytest.raises(RnnlabError, match=None) as err:
        config.validate()
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_threshold_one_is_allowed():
    """1.0 (every test example right) is the top of the range, not past it."""
    assert MemoryConfig(threshold=1.0).validate().threshold == 1.0
    with pytest.raises(RnnlabError, match=r"--threshold must be in \(0, 1\]"):
        MemoryConfig(threshold=1.0 + 1e-6).validate()
    assert memory_horizon({5: 1.0, 10: 1.0, 15: 0.99}, 1.0) == 10


# --- grid and hashing --------------------------------------------------------------------
def test_specs_cover_the_grid_in_order():
    specs = SMALL.specs()
    assert [(s.cell, s.length, s.seed) for s in specs] == [
        ("srn", 5, 0), ("srn", 5, 1), ("srn", 10, 0), ("srn", 10, 1),
        ("lstm", 5, 0), ("lstm", 5, 1), ("lstm", 10, 0), ("lstm", 10, 1)]
    assert len({s.config_hash for s in specs}) == len(specs)


DEFAULT_LR = get_protocol("default").train["lr"]


def test_hash_depends_on_what_changes_a_result_only():
    base = {s.config_hash for s in SMALL.specs()}
    same = MemoryConfig(cells=("srn", "lstm"), lengths=(10, 5), seeds=2, threshold=0.5,
                        engine="loop")
    assert {s.config_hash for s in same.specs()} == base
    # An override equal to the protocol's value is the same run.
    assert {s.config_hash for s in MemoryConfig(**{**SMALL.__dict__, "lr": DEFAULT_LR}).specs()} \
        == base
    changed = MemoryConfig(**{**SMALL.__dict__, "hidden_size": 16})
    assert not base & {s.config_hash for s in changed.specs()}
    # One spelling per value: an integer learning rate hashes like its float.
    assert MemoryConfig(lr=1).specs()[0].config_hash == MemoryConfig(lr=1.0).specs()[0].config_hash
    assert MemoryConfig(clip=0).settings()["clip"] is None      # 0 turns clipping off


def test_protocol_nndl_is_seed_004():
    s = MemoryConfig(protocol="nndl").settings()
    assert (s["k_train"], s["k_dev"], s["k_test"]) == (3, 1, 1)
    assert (s["embedding_dim"], s["hidden_size"], s["init"]) == (32, 32, "zeros")
    assert (s["optimizer"], s["lr"], s["batch_size"], s["epochs"]) == ("adam", 1e-3, 8, 500)
    assert (s["shuffle"], s["eval_every"], s["clip"]) == (False, 100, None)
    # Explicit options beside a protocol override it.
    assert MemoryConfig(protocol="nndl", epochs=3).settings()["epochs"] == 3


# --- statistics ----------------------------------------------------------------------------
def test_t_quantiles_match_tables():
    for df, expected in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_interval_over_seeds_and_undefined_for_one():
    ci = mean_ci([0.8, 0.9, 1.0])
    assert ci.mean == pytest.approx(0.9)
    assert ci.half_width == pytest.approx(4.3027 * 0.1 / math.sqrt(3), abs=1e-4)
    one = mean_ci([0.7])
    assert (one.mean, one.std, one.low, one.high, one.half_width) == (0.7, None, None, None,
                                                                      None)


# --- horizon -------------------------------------------------------------------------------
@pytest.mark.parametrize("means, expected", [
    ({5: 0.99, 10: 0.95, 15: 0.91}, 15),           # every length passes
    ({5: 0.99, 10: 0.5, 15: 0.2}, 5),              # fails beyond 5
    ({5: 0.6, 10: 0.95}, None),                    # fails at the shortest
    ({5: 0.95, 10: 0.4, 15: 0.95}, 5),             # a later pass does not extend it
    ({15: 0.95, 5: 0.99, 10: 0.9}, 15),            # equal to the threshold passes; order-free
])
def test_memory_horizon(means, expected):
    assert memory_horizon(means, 0.9) == expected


def test_a_mean_equal_to_the_threshold_passes_despite_rounding():
    # 0.85, 0.95 and 0.9 average to 0.8999999999999999 in floating point.
    rows = [{"cell": "srn", "length": 5, "seed": k, "best_dev_score": a, "test_score": a}
            for k, a in enumerate((0.85, 0.95, 0.9))]
    summary = summarize(MemoryConfig(cells=("srn",), lengths=(5,), seeds=3), rows)
    assert summary["cells"]["srn"]["horizon"] == 5
    assert "remembers at least 5" in summary["cells"]["srn"]["horizon_text"]
    from rnnlab.report.html import _summary_table

    assert 'class="pass"' in _summary_table(summary)


def test_horizon_sentences():
    assert horizon_sentence("lstm", {5: 1.0, 35: 0.97}, 0.9).startswith(
        "LSTM remembers at least 35 steps")
    assert horizon_sentence("srn", {5: 0.97, 10: 0.41, 15: 0.3}, 0.9).startswith(
        "SRN remembers 5 steps and fails beyond 5 (mean test accuracy 0.41 < 0.9 at length 10")
    assert horizon_sentence("gru", {5: 0.5, 10: 0.3}, 0.9).startswith(
        "GRU fails at every tested length")


def test_summary_on_hand_made_results():
    config = MemoryConfig(cells=("srn", "lstm"), lengths=(5, 10, 15), seeds=3)
    rows = [{"cell": c, "length": n, "seed": k, "best_dev_score": a, "test_score": a,
             "config_hash": f"{c}{n}{k}"}
            for c, accs in {"srn": {5: (0.95, 0.97, 0.99), 10: (0.5, 0.95, 0.96),
                                    15: (0.3, 0.2, 0.25)},
                            "lstm": {5: (1.0, 1.0, 1.0), 10: (0.99, 0.98, 0.97),
                                     15: (0.92, 0.94, 0.9)}}.items()
            for n, triple in accs.items() for k, a in enumerate(triple)]
    summary = summarize(config, rows, chance=0.1)
    srn, lstm = summary["cells"]["srn"], summary["cells"]["lstm"]
    assert srn["horizon"] == 5 and lstm["horizon"] == 15
    p10 = srn["lengths"][1]
    assert p10["mean"] == pytest.approx(0.80333, abs=1e-5) and p10["n"] == 3
    assert p10["ci_low"] < p10["mean"] < p10["ci_high"]
    # identical values: zero spread, a zero-width interval, not an undefined one
    assert lstm["lengths"][0]["ci_half_width"] == pytest.approx(0.0)
    assert summary["runs"] == {"expected": 18, "finished": 18, "failed": 0, "complete": True}
    assert summary["chance"] == 0.1 and summary["threshold"] == 0.9


# --- running -------------------------------------------------------------------------------
def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_writes_every_output(tmp_path):
    runner = FakeRunner()
    outcome = run_memory(SMALL, tmp_path, runner=runner, progress=False)
    assert outcome.trained == 8 and outcome.reused == 0
    rows = _read(tmp_path / "results.csv")
    # A tidy table: every setting that tells runs apart is a column, rows in grid order.
    assert list(rows[0])[:9] == ["model", "task", "length", "seed", "lr", "weight_decay",
                                 "hidden_size", "params", "state_size"]
    assert {"status", "best_dev_score", "test_score", "engine", "path", "config_hash",
            "reason"} <= set(rows[0])
    assert [(r["model"], r["task"], int(r["length"]), int(r["seed"])) for r in rows] == [
        (s.cell, "digitsum", s.length, s.seed) for s in SMALL.specs()]
    assert int(rows[0]["params"]) > 0 and int(rows[0]["state_size"]) == 32
    assert len(rows) == 8
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cells"]["srn"]["horizon"] == 5
    assert summary["cells"]["lstm"]["horizon_text"].startswith("LSTM remembers at least 10")
    assert summary["config"]["resolved"]["k_test"] == 20
    for name in ("report.html", "accuracy_vs_length.png", "curves_srn.png",
                 "curves_lstm.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "report.html") == outcome.report


def test_rerun_skips_finished_and_trains_only_what_changed(tmp_path, monkeypatch):
    # Only which runs train matters here; drawing four reports would triple the time.
    monkeypatch.setattr("rnnlab.report.html.write_memory_report",
                        lambda out_dir, *args: out_dir / "report.html")
    run_memory(SMALL, tmp_path, runner=FakeRunner(), progress=False)
    again = FakeRunner()
    outcome = run_memory(SMALL, tmp_path, runner=again, progress=False)
    assert again.trained == [] and outcome.reused == 8
    # A new length trains only that length; a new threshold trains nothing.
    wider = FakeRunner()
    run_memory(MemoryConfig(cells=("srn", "lstm"), lengths=(5, 10, 15), seeds=2,
                            threshold=0.5), tmp_path, runner=wider, progress=False)
    assert sorted({(s.cell, s.length) for s in wider.trained}) == [("lstm", 15), ("srn", 15)]
    # A changed hyper-parameter retrains everything it touches.
    retrained = FakeRunner()
    run_memory(MemoryConfig(**{**SMALL.__dict__, "lr": 0.01}), tmp_path, runner=retrained,
               progress=False)
    assert len(retrained.trained) == 8
    assert len(load_results(tmp_path / "results.csv")) == 8 + 4 + 8


def test_crash_keeps_whole_rows_and_resume_finishes(tmp_path):
    run_memory(MemoryConfig(cells=("srn",), lengths=(5,), seeds=1), tmp_path,
               runner=FakeRunner(), progress=False)
    report_before = (tmp_path / "report.html").read_text()
    with pytest.raises(KeyboardInterrupt):
        run_memory(SMALL, tmp_path, runner=FakeRunner(crash_after=3), progress=False)
    rows = _read(tmp_path / "results.csv")
    assert len(rows) == 1 + 3
    assert all(r["config_hash"] and r["test_score"] for r in rows)
    assert (tmp_path / "report.html").read_text() == report_before
    assert not list(tmp_path.glob(".*.tmp"))
    rest = FakeRunner()
    outcome = run_memory(SMALL, tmp_path, runner=rest, progress=False)
    assert len(rest.trained) == 8 - 1 - 3 and outcome.summary["runs"]["complete"]


def test_runner_returning_an_unrequested_run_is_a_bug(tmp_path):
    def rogue(specs, runs_dir):
        other = MemoryConfig(cells=("gru",), lengths=(7,), seeds=1).specs()[0]
        yield RunResult(other, 1.0, 1.0, 1, 0.0, "rogue")

    with pytest.raises(RuntimeError, match="unrequested"):
        run_memory(SMALL, tmp_path, runner=rogue, progress=False)
    assert not (tmp_path / "results.csv").exists()


def test_one_seed_has_no_interval(tmp_path):
    outcome = run_memory(MemoryConfig(cells=("srn",), lengths=(5, 10), seeds=1), tmp_path,
                         runner=FakeRunner(), progress=False)
    point = outcome.summary["cells"]["srn"]["lengths"][0]
    assert point["ci_low"] is None and point["ci_half_width"] is None
    assert "no confidence interval" in outcome.report.read_text()


def test_malformed_results_file_is_a_user_error(tmp_path):
    (tmp_path / "results.csv").write_text("cell,length\nsrn,five\n")
    with pytest.raises(RnnlabError, match="malformed row"):
        run_memory(SMALL, tmp_path, runner=FakeRunner(), progress=False)


# --- progress ------------------------------------------------------------------------------
def test_progress_on_a_terminal_and_in_a_log(monkeypatch):
    import io

    from rnnlab.experiments.progress import Progress, interactive

    live = io.StringIO()
    p = Progress(total=5, todo=4, stream=live, enabled=True)
    p.start()
    p.update(note="srn L=5")
    p.update()
    p.close()
    text = live.getvalue()
    # tqdm's bar, redrawn in place: 1 reused run, then 2 and 3 of 5, the last run's note
    assert "\r" in text and "1/5" in text and "2/5" in text and "3/5" in text
    assert "srn L=5" in text and ("run/s" in text or "s/run" in text)
    assert text.endswith("5 runs: 2 trained in 0.0 s, 1 already finished\n")

    log = io.StringIO()
    quiet = Progress(total=5, todo=4, stream=log)      # StringIO is not a terminal
    quiet.start()
    quiet.update(note="srn L=5 seed 0: test 0.900")
    quiet.close()
    # A log gets one plain line per finished run and the final line (Keras verbose=2).
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    assert lines[0].startswith("[2/5 runs]") and lines[0].endswith("srn L=5 seed 0: test 0.900")
    silent = io.StringIO()
    off = Progress(total=5, todo=4, stream=silent, enabled=False)
    off.update()
    off.close()
    assert silent.getvalue().count("\n") == 1

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("CI", "true")
    assert not interactive(Tty())
    monkeypatch.delenv("CI")
    assert interactive(Tty())
