"""The report on hand-made results: self-contained, complete, and its PNGs real."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from matplotlib.image import imread

from rnnlab.experiments import MemoryConfig, summarize
from rnnlab.report import write_memory_report
from rnnlab.report.plots import PALETTE, accuracy_vs_length, training_curves

PNG = b"\x89PNG\r\n\x1a\n"
FIRST = tuple(int(PALETTE[0][i:i + 2], 16) for i in (1, 3, 5))  # the first cell's colour
# The 95% band: the first colour at alpha 0.15 over white.
BAND = tuple(round(255 * 0.85 + 0.15 * v) for v in FIRST)


def pixels_of(png: bytes, rgb: tuple[int, ...], tol: int = 4) -> int:
    """How many pixels of the decoded PNG have colour ``rgb`` (within ``tol``)."""
    image = (imread(io.BytesIO(png))[..., :3] * 255).round().astype(int)
    return int((np.abs(image - np.array(rgb)).max(-1) <= tol).sum())


def hand_made(seeds: int = 3):
    config = MemoryConfig(cells=("srn", "residual-srn"), lengths=(5, 10, 20), seeds=seeds)
    means = {"srn": {5: 0.97, 10: 0.5, 20: 0.1}, "residual-srn": {5: 1.0, 10: 0.96, 20: 0.93}}
    rows = [{"cell": c, "length": n, "seed": k, "best_dev_score": m,
             "test_score": m - 0.01 * k, "steps": 100, "seconds": 0.5, "engine": "loop",
             "config_hash": f"h{c}{n}{k}"}
            for c, by_len in means.items() for n, m in by_len.items() for k in range(seeds)]
    return config, rows, summarize(config, rows, chance=0.1)


def test_report_is_self_contained_and_complete(tmp_path):
    config, rows, summary = hand_made()
    # No metrics files exist: the report must still be drawn, without curve figures.
    path = write_memory_report(tmp_path, summary, config.specs(), rows)
    html = path.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 1 and all(s.startswith("data:image/png;base64,") for s in sources)
    embedded = base64.b64decode(sources[0].split(",", 1)[1])
    assert embedded == (tmp_path / "accuracy_vs_length.png").read_bytes()
    assert embedded.startswith(PNG)
    assert html.count("<tr><td class='l'>") == len(rows)
    assert "SRN remembers 5 steps and fails beyond 5" in html
    assert "Residual SRN remembers at least 20 steps" in html
    assert "The memory horizon of a cell is the longest tested length" in html
    assert "&quot;resolved&quot;" in html          # the full configuration, as JSON
    assert "Incomplete" not in html


def test_report_says_when_runs_are_missing(tmp_path):
    config, rows, _ = hand_made()
    summary = summarize(config, rows[:-2], chance=0.1)
    html = write_memory_report(tmp_path, summary, config.specs(), rows[:-2]).read_text()
    assert "16 of 18 runs have finished" in html


def test_one_seed_draws_no_band():
    """Decoded pixels, not magic bytes: three seeds draw the interval band in the cell's
    colour, one seed draws the line but no band."""
    _, _, summary = hand_made(seeds=1)
    assert all(p["ci_low"] is None for c in summary["cells"].values() for p in c["lengths"])
    one = accuracy_vs_length(summary)
    three = accuracy_vs_length(hand_made(seeds=3)[2])
    assert pixels_of(one, FIRST) > 500 and pixels_of(three, FIRST) > 500  # the lines
    assert pixels_of(three, BAND) > 2000 > 500 > pixels_of(one, BAND)


@pytest.mark.parametrize("dev", [[0.1, 0.5, 0.9], [None, 0.4, None]])
def test_training_curves_png(dev):
    curve = {"step": [10, 20, 30], "train_loss": [2.0, 1.0, 0.5], "dev_accuracy": dev}
    png = training_curves("LSTM", {5: [curve, curve], 10: [curve]})
    one_line = tuple(round(0.75 * v + 0.25 * 255) for v in FIRST)  # drawn at alpha 0.75
    assert png.startswith(PNG) and pixels_of(png, one_line) > 100  # the curves were drawn
