"""The memory experiment's report: one self-contained ``report.html``.

Self-contained means a person can mail the file or open it from a USB stick:
figures are embedded as base64 PNGs, the style sheet is inline, nothing is
fetched. The same figures are also written as PNG files beside it. Every file
is written atomically, so a crash leaves the previous report, never half of one.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from rnnlab.experiments.results import FAILED, load_curve, reaches
from rnnlab.io import atomic_write_bytes, atomic_write_text
from rnnlab.report import plots

_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.8em; }
.sub { color: #555; margin-top: 0; }
ul.horizons { font-size: 1.08em; } ul.horizons li { margin: .25em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9em; }
table { border-collapse: collapse; font-size: .88em; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f3f3f5; } td.l, th.l { text-align: left; }
td.pass { background: #e7f5ea; } td.fail { background: #fbeaea; }
td.failed, .failed { color: #a11; }
pre { background: #f6f6f8; padding: .8em; overflow-x: auto; font-size: .85em; }
details { margin: .8em 0; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _summary_table(summary: Mapping[str, Any]) -> str:
    lengths = sorted({p["length"] for c in summary["cells"].values() for p in c["lengths"]})
    head = "".join(f"<th>L = {n}</th>" for n in lengths)
    body = []
    for info in summary["cells"].values():
        by_len = {p["length"]: p for p in info["lengths"]}
        cells = []
        for n in lengths:
            p = by_len.get(n)
            if p is None:
                cells.append("<td>not run</td>")
                continue
            failed = (f' <small class="failed">({p["failed"]} failed)</small>'
                      if p.get("failed") else "")
            if p["mean"] is None:
                cells.append(f'<td class="failed">no result{failed}</td>')
                continue
            ok = ("pass" if reaches(p["mean"], summary["threshold"]) and not p.get("failed")
                  else "fail")
            ci = ("" if p["ci_half_width"] is None
                  else f" ± {p['ci_half_width']:.3f}")
            cells.append(f'<td class="{ok}">{p["mean"]:.3f}{ci} <small>(n={p["n"]})'
                         f"</small>{failed}</td>")
        horizon = info["horizon"]
        body.append(f'<tr><th class="l">{escape(info["label"])}</th>{"".join(cells)}'
                    f"<td>{'none' if horizon is None else horizon}</td></tr>")
    return (f'<table id="summary"><thead><tr><th class="l">cell</th>{head}'
            f"<th>horizon</th></tr></thead><tbody>{''.join(body)}</tbody></table>")


def _results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = ("<tr><th class='l'>cell</th><th>length</th><th>seed</th><th class='l'>status</th>"
            "<th>best dev accuracy</th><th>test accuracy</th><th>steps</th>"
            "<th>seconds</th><th class='l'>engine</th><th class='l'>config hash</th></tr>")
    body = "".join(_result_row(r) for r in rows)
    return f'<table id="results"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _result_row(r: Mapping[str, Any]) -> str:
    """One run; a failed one shows its reason instead of accuracies."""
    if r.get("status") == FAILED:
        scores = (f"<td class='l failed' colspan='2'>failed: {escape(r['reason'])}</td>")
        status = "<td class='l failed'>failed</td>"
    else:
        scores = f"<td>{r['best_dev_accuracy']:.3f}</td><td>{r['test_accuracy']:.3f}</td>"
        status = "<td class='l'>ok</td>"
    return (f"<tr><td class='l'>{escape(r['cell'])}</td><td>{r['length']}</td>"
            f"<td>{r['seed']}</td>{status}{scores}<td>{r['steps']}</td>"
            f"<td>{r['seconds']:.1f}</td><td class='l'>{escape(str(r.get('engine', '')))}</td>"
            f"<td class='l'><code>{escape(r['config_hash'])}</code></td></tr>")


def _settings_table(config: Mapping[str, Any]) -> str:
    grid = {"cells": ", ".join(config["cells"]),
            "lengths": ", ".join(str(n) for n in config["lengths"]),
            "seeds": f"{config['seeds']} (0 .. {config['seeds'] - 1})",
            "threshold": config["threshold"], "protocol": config["protocol"],
            "engine": config["engine"]}
    items = list(grid.items()) + list(config["resolved"].items())
    rows = "".join(f"<tr><th class='l'>{escape(k)}</th><td class='l'>{escape(str(v))}</td></tr>"
                   for k, v in items)
    return f'<table id="config">{rows}</table>'


def render_memory_report(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                         images: Mapping[str, bytes], *, protocol_description: str = ""
                         ) -> str:
    """The report as one HTML string. ``images`` maps ``"accuracy_vs_length"`` and
    ``"curves_<cell>"`` to PNG bytes; ``rows`` are this grid's results rows."""
    config = summary["config"]
    runs = summary["runs"]
    horizons = "".join(f"<li>{escape(c['horizon_text'])}</li>"
                       for c in summary["cells"].values())
    chance = summary.get("chance")
    incomplete = ("" if runs["complete"] else
                  f"<p><strong>Incomplete:</strong> {runs['finished']} of {runs['expected']} "
                  f"runs have finished; rerun the same command to train the rest.</p>")
    if runs.get("failed"):
        incomplete += (f'<p class="failed" id="failed-runs"><strong>{runs["failed"]} failed '
                       "run(s)</strong> (see <a href='#results'>Every run</a> for why): they "
                       "have no accuracy, are left out of every mean, and a length where a run "
                       "failed ends the horizon. Rerun with <code>--retry-failed</code> to try "
                       "them again.</p>")
    one_seed = ("<p>With one seed per point the spread over seeds is unknown, so no "
                "confidence interval is drawn or given (it is undefined, not zero).</p>"
                if config["seeds"] == 1 else "")
    curves = "".join(
        f"<figure>{_img(images['curves_' + cell], info['label'] + ' training curves')}"
        f"<figcaption>{escape(info['label'])}: training loss (top, log scale) and dev "
        f"accuracy (bottom) against optimiser steps, a panel per length, a line per "
        f"seed.</figcaption></figure>"
        for cell, info in summary["cells"].items() if "curves_" + cell in images)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rnnlab memory experiment</title><style>{_STYLE}</style></head>
<body>
<h1>How far back does each cell remember?</h1>
<p class="sub">rnnlab memory experiment on DigitSum: {len(config['cells'])} cells ×
{len(config['lengths'])} lengths × {config['seeds']} seeds, protocol
<code>{escape(config['protocol'])}</code>. Generated {generated}.</p>
{incomplete}
<h2>Memory horizons</h2>
<ul class="horizons" id="horizons">{horizons}</ul>
<p id="horizon-definition">{escape(summary['horizon_definition'])} Threshold:
{summary['threshold']:g}{'' if chance is None else f'; chance accuracy: {chance:.3f}'}.</p>

<h2>Accuracy against length</h2>
<figure>{_img(images['accuracy_vs_length'], 'test accuracy against sequence length')}
<figcaption>The task: the input is a sequence of L digits; the answer is the sum of the
first two (19 classes), everything after them is distraction. Lines: mean test accuracy
over seeds; bands: {escape(summary['interval'])} Dots: single seeds. Dashed: chance;
dotted: threshold.</figcaption></figure>
{one_seed}
{_summary_table(summary)}
<p><small>Cells: mean test accuracy ± half-width of the 95% interval (n seeds); green
at or above the threshold.</small></p>

<h2>Training curves</h2>
{curves}

<h2>Every run</h2>
<p>One row per run, as in <code>results.csv</code>. The config hash identifies everything
that determines the run's result; rerunning the experiment skips runs whose hash is
already here (failed ones too, unless <code>--retry-failed</code>).</p>
{_results_table(rows)}

<h2>Configuration</h2>
<p>{escape(protocol_description)}</p>
{_settings_table(config)}
<details><summary>Full configuration (JSON)</summary>
<pre>{escape(json.dumps(config, indent=2))}</pre></details>
<p>Files beside this report: <code>results.csv</code>, <code>summary.json</code>,
<code>accuracy_vs_length.png</code>, <code>curves_&lt;cell&gt;.png</code>, and each
run's metrics and checkpoint under <code>runs/</code>.</p>
</body></html>
"""


def write_memory_report(out_dir: str | Path, summary: Mapping[str, Any],
                        specs: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Draw the figures, write them as PNGs and write ``report.html``; return its path.

    ``specs`` are the grid's :class:`~rnnlab.experiments.grid.RunSpec` objects;
    each finished run's curve is read from ``out_dir/runs/<run_id>/metrics.csv``.
    """
    from rnnlab.protocols import get_protocol

    out_dir = Path(out_dir)
    finished = {r["config_hash"] for r in rows if r.get("status") != FAILED}
    images = {"accuracy_vs_length": plots.accuracy_vs_length(summary)}
    for index, (cell, info) in enumerate(summary["cells"].items()):
        by_length: dict[int, list[dict[str, Any]]] = {}
        for spec in specs:
            if spec.cell != cell or spec.config_hash not in finished:
                continue
            curve = load_curve(out_dir / "runs" / spec.run_id / "metrics.csv")
            if curve is not None:
                by_length.setdefault(spec.length, []).append(curve)
        if by_length:
            images[f"curves_{cell}"] = plots.training_curves(info["label"], by_length, index)
    for name, png in images.items():
        atomic_write_bytes(out_dir / f"{name}.png", png)
    protocol = get_protocol(summary["config"]["protocol"]).description
    html = render_memory_report(summary, rows, images, protocol_description=protocol)
    return atomic_write_text(out_dir / "report.html", html)
