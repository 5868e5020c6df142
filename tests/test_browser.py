"""report.html opens in a real browser: headless Chromium loads it from disk.

A script appended to a copy of the report waits for the page's load event,
counts the images that decoded (``naturalWidth > 0``) and the rows of the
results table, and writes the counts into the DOM, which ``--dump-dom`` prints.
Under ``CI=true`` a missing Chromium is a failure, not a skip (``make test``
installs it there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rnnlab.experiments import MemoryConfig, RunResult, run_memory
from rnnlab.experiments import memory as memory_mod
from rnnlab.io import write_csv

pytestmark = pytest.mark.browser

CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var result = {
    images: imgs.length,
    decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    results_rows: document.querySelectorAll("table#results tbody tr").length,
    horizons: document.querySelectorAll("#horizons li").length
  };
  var pre = document.createElement("pre");
  pre.id = "rnnlab-check";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("CI=true but no chromium on PATH: `make browser` installs it")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def open_in_browser(report: Path, tmp_path: Path) -> dict:
    page = tmp_path / "checked.html"
    page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--no-first-run",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}",
               # Virtual time lets the load event and its script finish before the dump.
               "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    match = re.search(r'<pre id="rnnlab-check">([^<]*)</pre>', done.stdout)
    assert match, f"the check did not run; chromium said:\n{done.stderr[-2000:]}"
    return json.loads(match.group(1))


def fake_runner(specs, runs_dir):
    for spec in specs:
        acc = 0.95 if spec.cell == "lstm" or spec.length <= 5 else 0.4
        rows = [{"step": s, "train_loss": 1.0 / s, "dev_accuracy": acc} for s in (1, 2, 3)]
        write_csv(runs_dir / spec.run_id / "metrics.csv", list(rows[0]), rows)
        yield RunResult(spec, acc, acc, 3, 0.0, "fake")


@pytest.fixture
def report(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(memory_mod, "task_chance", lambda config: 0.1)
    config = MemoryConfig(cells=("srn", "lstm"), lengths=(5, 10), seeds=2)
    return run_memory(config, tmp_path / "out", runner=fake_runner, progress=False).report


def test_report_opens_with_every_image_and_the_table(report, tmp_path):
    seen = open_in_browser(report, tmp_path)
    assert seen == {"images": 3, "decoded": 3, "results_rows": 8, "horizons": 2}


def test_the_check_sees_a_broken_image(report, tmp_path):
    html = report.read_text()
    broken = re.sub(r"base64,[A-Za-z0-9+/]{40}", "base64,broken", html, count=1)
    assert broken != html
    report.write_text(broken)
    seen = open_in_browser(report, tmp_path)
    assert seen["decoded"] == seen["images"] - 1


def test_multi_task_report_opens_with_every_image(tmp_path):
    """Two models x two tasks: the heat map, a score plot per task and the curves of
    every model and task (inside closed <details>) all decode."""
    config = MemoryConfig(cells=("srn", "lstm"), tasks=("digitsum", "copy"), lengths=(5, 10),
                          seeds=2, k_train=1, k_dev=1, k_test=1)
    report = run_memory(config, tmp_path / "out", runner=fake_runner, progress=False).report
    seen = open_in_browser(report, tmp_path)
    # horizons + 2 score plots + 4 curve figures
    assert seen == {"images": 7, "decoded": 7, "results_rows": 16, "horizons": 4}
