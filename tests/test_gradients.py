"""The gradient-through-time experiments in their fast mode, checked for what they show."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from rnnlab.cli import cli
from rnnlab.doctor import gradients
from rnnlab.io import read_csv


def test_explosion_clipping_tames_the_gradients(tmp_path):
    config = gradients.ExplosionConfig(epochs=2)
    result = gradients.run_explosion(config, tmp_path)
    unclipped, clipped = result["runs"]["unclipped"], result["runs"]["clipped at 5"]
    assert unclipped["max_norm"] > clipped["max_norm"]
    assert unclipped["max_norm"] > 100  # SGD at lr 0.2 on a summed loss: it explodes
    # what the optimizer applies never exceeds the per-parameter clip
    assert clipped["max_norm_applied"] <= 5.0 + 1e-4
    rows = read_csv(tmp_path / "explosion.csv")
    assert {r["run"] for r in rows} == {"unclipped", "clipped at 5"}
    steps = [r for r in rows if r["run"] == "unclipped"]
    assert len(steps) == 2 * 5  # 300 examples in batches of 64, two epochs
    assert all(float(r["U"]) >= 0 for r in steps[1:])
    assert (tmp_path / "explosion.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "explosion.json").read_text())["config"]["lr"] == 0.2


def test_vanishing_srn_against_lstm_and_residual_at_length_50(tmp_path):
    config = gradients.VanishingConfig(cells=("srn", "residual-srn", "lstm"), length=50,
                                       batch=32)
    result = gradients.run_vanishing(config, tmp_path)
    srn, res, lstm = (result["cells"][c]["init"] for c in ("srn", "residual-srn", "lstm"))
    assert len(srn["norms"]) == 50
    # The SRN's gradient at the first step is about 1e-11 of its gradient at the last.
    assert srn["ratio"] < 1e-8
    # Measured at initialisation, the LSTM's first-step gradient is ~10x the SRN's
    # (its gradient decays too, by the forget gate of about 0.5 per step).
    assert lstm["first"] > 3 * srn["first"]
    # The residual SRN's identity path carries the gradient back undiminished.
    assert res["ratio"] > 1.0
    rows = read_csv(tmp_path / "vanishing.csv")
    assert len(rows) == 3 * 50
    assert (tmp_path / "vanishing.png").read_bytes()[:4] == b"\x89PNG"


def test_recorded_gates_are_the_ones_torch_lstmcell_computes():
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(4, 6)
    weights = {k: getattr(cell, k).detach() for k in ("weight_ih", "weight_hh", "bias_ih",
                                                      "bias_hh")}
    x = torch.randn(7, 4)
    gates = gradients.lstm_gates(weights, x)
    h = c = torch.zeros(1, 6)
    with torch.no_grad():
        for t in range(7):
            c_prev = c
            h, c = cell(x[t:t + 1], (h, c))  # torch's own kernel, not rnnlab's cell
            torch.testing.assert_close(gates["h"][:, t], h[0], rtol=0, atol=1e-6)
            torch.testing.assert_close(gates["c"][:, t], c[0], rtol=0, atol=1e-6)
            i, f, g, o = (gates[k][:, t] for k in "ifgo")
            # the recorded activations are the gates: they rebuild c and h
            torch.testing.assert_close(f * c_prev[0] + i * g, c[0], rtol=0, atol=1e-6)
            torch.testing.assert_close(o * torch.tanh(c[0]), h[0], rtol=0, atol=1e-6)
    assert gates["f"].shape == (6, 7)
    assert float(gates["f"].min()) > 0 and float(gates["f"].max()) < 1


@pytest.mark.slow
def test_gates_cli_fast(tmp_path):
    out = tmp_path / "gates"
    result = CliRunner().invoke(cli, ["gradients", "gates", "--fast", "--out", str(out),
                                      "--length", "10"])
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "gates.csv")
    assert {r["gate"] for r in rows} == {"i", "f", "o"}
    assert len(rows) == 3 * 32 * 10
    assert all(0 < float(r["value"]) < 1 for r in rows)
    data = json.loads((out / "gates.json").read_text())
    tokens = data["tokens"]
    assert tokens[0] > 0 and tokens[1] > 0 and data["label"] == tokens[0] + tokens[1]
    assert math.isfinite(data["accuracy"])


def test_doctor_flags_the_unclipped_explosion_and_not_the_clipped_run():
    import rnnlab.doctor as doctor

    config = gradients.ExplosionConfig(epochs=4)
    codes = {}
    for clip in (None, 5.0):
        with doctor.watch() as doc:
            gradients.train_logging_gradients(config, clip)
        codes[clip] = {f.code for f in doc.report.findings}
    assert "exploding-gradient" in codes[None]
    assert "exploding-gradient" not in codes[5.0]


@pytest.mark.parametrize("command", ["explosion", "vanishing", "gates"])
def test_out_that_cannot_be_a_folder_is_a_user_error(tmp_path, capsys, command):
    from rnnlab.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x\n")
    assert main(["gradients", command, "--fast", "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the output folder" in err and len(err.strip().splitlines()) == 1
