"""The doctor on scripts with known bugs and on their fixed versions.

Each bug fixture must get its finding, and each fixed version none at all: a false
alarm is as bad as a missed bug.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import rnnlab.doctor as doctor
from doctor_corpus_runs import report_of
from rnnlab.cli import cli, main
from rnnlab.doctor import carry, probes

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"


def run(name: str, steps: int = 40, args: tuple[str, ...] = ()):
    return doctor.run_script(FIXTURES / name, list(args), max_steps=steps, max_seconds=60,
                             quiet=True)


def problems(report) -> set[str]:
    return {f.code for f in report.findings if f.is_problem}


def test_state_leak_points_at_the_detach_line():
    report = report_of("burst_leak.py")
    finding = next(f for f in report.findings if f.code == "state-carried")
    assert finding.numbers["kind"] == "repeated"
    assert finding.numbers["how"] == "same storage"
    codes = [loc.code.strip() for loc in finding.where]
    # the innermost line that hands the state on, then the loop line that holds it
    assert codes[0].startswith("r_out, h_state = self.rnn(x, h_state)")
    assert codes[1].startswith("prediction, h_state = rnn(x, h_state)")
    assert any(c.startswith("h_state = h_state.data") for c in codes)
    assert "`h_state = None`" in finding.fix


def test_state_in_the_module_is_named_as_the_script_names_it():
    finding = next(f for f in report_of("module_hidden_leak.py").findings
                   if f.code == "state-carried")
    assert finding.where[0].code.strip().startswith("out, self.hidden = self.lstm(")
    assert "`self.hidden`" in finding.fix and "`model.hidden = None`" in finding.fix
    assert finding.numbers["evidence"] == "per-sequence-target"


@pytest.mark.parametrize(("label", "evidence"), [
    ("sincos_leak.py", "shuffled"), ("loader_shuffle_leak.py", "shuffled"),
    ("lstmcell_leak.py", "shuffled"), ("module_hidden_leak.py", "per-sequence-target"),
])
def test_leak_decisions_are_errors_with_their_evidence(label, evidence):
    finding = next(f for f in report_of(label).findings if f.code == "state-carried")
    assert finding.severity == "error" and finding.numbers["kind"] == "unrelated"
    assert finding.numbers["evidence"] == evidence


@pytest.mark.parametrize("label", ["sine_tbptt.py", "lm_tbptt.py", "charrnn_onehot_tbptt.py",
                                   "embedded_tbptt.py"])
def test_truncated_bptt_is_recognised_not_flagged(label):
    report = report_of(label)
    assert "state-carried" not in report.codes()
    note = next(n for n in report.notes if n.code == "truncated-bptt")
    assert note.numbers["kind"] == "continuous"


def test_rnnlab_recurrent_layer_is_watched():
    report = report_of("rnnlab_digitsum.py")
    assert report.modules == ["Recurrent('lstm', 32, 32, backend='python')"]
    assert {n.code for n in report.notes} >= {"axes", "uses-past", "gradient-through-time"}


def test_lstm_cells_in_a_loop_are_watched_and_checked():
    report = report_of("lstmcell_loop.py")
    assert report.modules == ["LSTMCell(1, 32)"]
    assert {n.code for n in report.notes} >= {"axes", "uses-past", "gradient-through-time"}
    assert "checked: sequences of a batch are independent" in report.format()


def test_axes_mixed_names_batch_first():
    finding = next(f for f in report_of("pairs_swapped.py").findings if f.code == "axes-mixed")
    assert "batch_first" in finding.evidence and "batch_first=True" in finding.fix
    assert 0 < finding.numbers["share"] <= 1


def test_unbatched_input_gets_its_own_cause_and_fix():
    finding = next(f for f in report_of("unbatched_2d.py").findings if f.code == "axes-mixed")
    assert "2-D input (32, 6)" in finding.evidence and "unbatched" in finding.evidence
    assert "transpose" not in finding.fix and "(num_layers, N, H)" in finding.fix


def test_axes_mixed_in_the_data_points_at_the_view():
    finding = next(f for f in report_of("data_view_scrambled.py").findings
                   if f.code == "axes-mixed-in-data")
    assert any("inputs.view(length, -1, 1)" in loc.code for loc in finding.where)
    n = finding.numbers
    assert n["step_along_time_other_layout"] < 0.4 * n["step_along_time"]


def test_long_lstm_at_initialisation_is_not_a_vanishing_gradient():
    report = report_of("classifier_lstm.py")
    note = next(n for n in report.notes if n.code == "gradient-through-time")
    assert note.numbers["steps"] == 60 and note.numbers["cell"] == "lstm"
    assert note.numbers["ratio"] < 1e-3 and "fresh_ratio" in note.numbers


def test_lbfgs_steps_are_counted_once_per_step():
    report = report_of("lbfgs_regressor.py")
    assert report.steps == 20 and report.stopped == "the script finished"


def test_budget_stops_the_script_and_counts_steps():
    report = run("burst_fixed.py", 7)
    assert report.steps == 7
    assert "step budget" in report.stopped


def test_script_error_is_a_finding_not_a_crash(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import torch\nrnn = torch.nn.RNN(3, 4)\nrnn(torch.zeros(2, 5, 7))\n")
    report = doctor.run_script(script, max_steps=5, quiet=True)
    assert report.codes()[0] == "script-error"
    assert report.findings[0].where[0].line == 3
    assert not report.healthy


def test_missing_script_is_a_user_error(capsys):
    assert main(["doctor", "no/such/script.py"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no script at" in err


def test_cli_writes_json_and_plots_and_exit_code(tmp_path):
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli, ["doctor", str(FIXTURES / "burst_leak.py"), "--out", str(out),
                                 "--max-steps", "12", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert [f["code"] for f in data["findings"]][0] == "state-carried"
    assert data["healthy"] is False
    saved = json.loads((out / "findings.json").read_text())
    assert saved["findings"][0]["code"] == "state-carried"
    for name in ("state_gradients.png", "grad_norms.png", "loss.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    clean = runner.invoke(cli, ["doctor", str(FIXTURES / "pairs_fixed.py"), "--out",
                                str(tmp_path / "clean"), "--max-steps", "5"])
    assert clean.exit_code == 0, clean.output
    assert "Clean bill of health" in clean.output


# --- from Python ------------------------------------------------------------------------
class Tagger(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 8, batch_first=batch_first)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def _batch(n: int = 6, length: int = 9):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, length, 3, generator=g), torch.randint(0, 2, (n, length), generator=g)


def _loss(out, y):
    return nn.functional.cross_entropy(out.reshape(-1, 2), y.reshape(-1))


def test_check_flags_swapped_axes():
    torch.manual_seed(0)
    report = doctor.check(Tagger(batch_first=False), _batch(), _loss)
    assert "axes-mixed" in problems(report), report.format()


def test_check_on_correct_model_is_clean():
    torch.manual_seed(0)
    model = Tagger(batch_first=True)
    before = [p.grad for p in model.parameters()]
    report = doctor.check(model, _batch(), _loss)
    assert report.healthy, report.format()
    assert [p.grad for p in model.parameters()] == before
    profile = report.series["state_gradients"][0]["norms"]
    assert len(profile) == 9 and all(v > 0 for v in profile)


def test_check_flags_a_model_without_memory():
    class PerStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 8, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            n, length, f = x.shape
            out, _ = self.rnn(x.reshape(n * length, 1, f))  # every step its own sequence
            return self.head(out.reshape(n, length, -1))

    torch.manual_seed(0)
    report = doctor.check(PerStep(), _batch(), _loss)
    assert problems(report) == {"ignores-past"}, report.format()


def test_watch_catches_a_leak_in_my_own_loop_and_stops_it():
    torch.manual_seed(0)
    model = Tagger(batch_first=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _batch()
    steps = 0
    with doctor.watch(max_steps=4) as doc:
        state = None
        for _ in range(100):
            out, state = model.rnn(x, state)
            state = tuple(s.detach() for s in state)
            loss = _loss(model.head(out), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    # the fourth optimizer.step() spends the budget and stops the loop inside it
    assert steps == 3 and doc.report.steps == 4
    finding = next(f for f in doc.report.findings if f.code == "state-carried")
    assert finding.where[0].file == __file__
    assert "model.rnn(x, state)" in finding.where[0].code


def test_non_finite_loss_is_reported():
    model = Tagger(batch_first=True)
    x, y = _batch()
    with doctor.watch() as doc:
        loss = _loss(model(x), y) * math.inf
        loss.backward()
    assert "non-finite-loss" in problems(doc.report)


# --- probes -------------------------------------------------------------------------------
def _chunks(rows: int, start: float):
    t = start + 0.3 * torch.arange(10.0)
    return torch.sin(t + torch.arange(rows).unsqueeze(1)).unsqueeze(-1)


def test_continuity_tells_stream_from_repeat_from_unrelated():
    a, b = _chunks(4, 0.0), _chunks(4, 3.0)
    assert carry.continuity(a, b, batch_first=True)[0] == "continuous"
    assert carry.continuity(a, a.clone(), batch_first=True)[0] == "repeated"
    shuffled = b[torch.tensor([2, 3, 0, 1])]
    assert carry.continuity(a, shuffled, batch_first=True)[0] == "unrelated"
    bits = torch.randint(0, 2, (8, 10, 1), generator=torch.Generator().manual_seed(0)).float()
    assert carry.continuity(bits, bits.roll(1, 0), batch_first=True)[0] == "undecidable"


def test_memoryless_baseline_counts_what_the_current_input_gives():
    x = torch.tensor([[0, 1, 0, 1]] * 30)
    y = torch.tensor([[0, 1, 1, 1]] * 30)  # from x alone: x=0 -> 0 or 1 (half), x=1 -> 1
    result = probes.memoryless_baseline(x, y)
    assert result["metric"] == "accuracy"
    assert result["memoryless"] == pytest.approx(0.75)
    assert result["chance"] == pytest.approx(0.75)


def test_out_that_cannot_be_a_folder_fails_before_the_script_runs(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x\n")
    script = tmp_path / "ran.py"
    script.write_text(f"open({str(tmp_path / 'ran.txt')!r}, 'w').close()\n")
    assert main(["doctor", str(script), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the output folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ran.txt").exists()


def test_run_script_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    import os
    import signal
    import sys

    import torch.nn.functional as F

    monkeypatch.delenv("MPLBACKEND", raising=False)
    script = tmp_path / "boom.py"
    script.write_text("import torch\nraise ValueError('boom')\n")
    before = (F.cross_entropy, torch.Tensor.backward, sys.argv[:], sys.path[:],
              signal.getsignal(signal.SIGALRM))
    report = doctor.run_script(script, max_steps=5)
    assert report.codes()[0] == "script-error"
    assert (F.cross_entropy, torch.Tensor.backward, sys.argv[:], sys.path[:],
            signal.getsignal(signal.SIGALRM)) == before
    assert "MPLBACKEND" not in os.environ


class LastStep(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _last_step_check(rnn: nn.Module):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 40, 3, generator=g), torch.randint(0, 2, (8,), generator=g)
    return doctor.check(LastStep(rnn), (x, y), nn.functional.cross_entropy)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_fresh_cells_over_40_steps_are_normal(cls):
    torch.manual_seed(0)
    report = _last_step_check(cls(3, 16, batch_first=True))
    assert "vanishing-gradient" not in report.codes(), report.format()
    note = next(n for n in report.notes if n.code == "gradient-through-time")
    assert note.numbers["fresh_ratio"] > 0


def test_vanishing_far_beyond_a_fresh_twin_is_flagged_with_advice_for_the_cell():
    torch.manual_seed(0)
    srn = nn.RNN(3, 16, batch_first=True)
    lstm = nn.LSTM(3, 16, batch_first=True)
    with torch.no_grad():
        srn.weight_hh_l0.mul_(0.02)  # a recurrence that forgets at once
        lstm.bias_ih_l0[16:32].fill_(-12.0)  # the forget gate shut
        lstm.bias_hh_l0[16:32].fill_(-12.0)
    srn_finding = next(f for f in _last_step_check(srn).findings
                       if f.code == "vanishing-gradient")
    assert "LSTM or GRU" in srn_finding.fix
    assert srn_finding.numbers["ratio"] < srn_finding.numbers["fresh_ratio"] / 1e3
    lstm_finding = next(f for f in _last_step_check(lstm).findings
                        if f.code == "vanishing-gradient")
    assert "Use an LSTM" not in lstm_finding.fix and "forget-gate" in lstm_finding.fix
