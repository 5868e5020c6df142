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


def _results_table(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    head = ("<tr><th class='l'>model</th><th class='l'>task</th><th>length</th><th>seed</th>"
            "<th>lr</th><th>weight decay</th><th class='l'>status</th>"
            "<th>best dev score</th><th>test score</th><th>steps</th>"
            "<th>seconds</th><th class='l'>engine/path</th><th class='l'>config hash</th></tr>")
    body = "".join(_result_row(r, summary) for r in rows)
    return f'<table id="results"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _result_row(r: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """One run, linked to its curves; a failed one shows its reason instead of scores."""
    if r.get("status") == FAILED:
        scores = (f"<td class='l failed' colspan='2'>failed: {escape(r['reason'])}</td>")
        status = "<td class='l failed'>failed</td>"
    else:
        scores = f"<td>{r['best_dev_score']:.3f}</td><td>{r['test_score']:.3f}</td>"
        status = "<td class='l'>ok</td>"
    task = r.get("task") or "digitsum"
    key = curve_key(summary, r["cell"], task)
    lr = "" if r.get("lr") is None else f"{r['lr']:g}"
    where = "/".join(x for x in (str(r.get("engine", "")), str(r.get("path") or "")) if x)
    return (f"<tr><td class='l'><a href='#{escape(key)}'>{escape(r['cell'])}</a></td>"
            f"<td class='l'>{escape(task)}</td><td>{r['length']}</td>"
            f"<td>{r['seed']}</td><td>{lr}</td><td>{r.get('weight_decay') or 0:g}</td>"
            f"{status}{scores}<td>{r['steps']}</td>"
            f"<td>{r['seconds']:.1f}</td><td class='l'>{escape(where)}</td>"
            f"<td class='l'><code>{escape(r['config_hash'])}</code></td></tr>")


def _settings_table(config: Mapping[str, Any]) -> str:
    grid = {"models": ", ".join([*config["cells"], *config.get("models", {})]),
            "tasks": ", ".join(config.get("tasks", ["digitsum"])),
            "lengths": "; ".join(f"{t}: {', '.join(map(str, ns))}"
                                 for t, ns in config.get("lengths_by_task", {}).items())
            or ", ".join(str(n) for n in config["lengths"]),
            "seeds": f"{config['seeds']} (0 .. {config['seeds'] - 1})",
            "threshold": config["threshold"], "protocol": config["protocol"],
            "engine": config["engine"], "match_params": config.get("match_params")}
    items = list(grid.items()) + list(config["resolved"].items())
    rows = "".join(f"<tr><th class='l'>{escape(k)}</th><td class='l'>{escape(str(v))}</td></tr>"
                   for k, v in items)
    return f'<table id="config">{rows}</table>'


def overrides_sentence(config: Mapping[str, Any]) -> str:
    """What was run that differs from the protocol's description ("epochs 20 (the
    protocol says 100)"), so the text never claims settings that were not run."""
    from rnnlab.experiments.grid import SETTINGS
    from rnnlab.protocols import get_protocol

    protocol = get_protocol(config["protocol"])
    sections = {"model": protocol.model, "train": protocol.train, "task": protocol.task}
    resolved = config["resolved"]
    changed = []
    for name, (section, key) in SETTINGS.items():
        said = sections[section].get(key)
        ran = resolved.get(name)
        if name == "lr" and isinstance(ran, list):
            if ran != [said]:
                changed.append(f"lr {', '.join(f'{v:g}' for v in ran)} (the protocol says "
                               f"{said:g})")
            continue
        if said is not None and ran != said:
            changed.append(f"{name} {ran} (the protocol says {said})")
    wd = resolved.get("weight_decay") or [0.0]
    if wd != [0.0]:
        changed.append(f"weight decay {', '.join(f'{v:g}' for v in wd)}")
    if not changed:
        return "Every setting is the protocol's."
    return "Run with these settings instead of the protocol's: " + "; ".join(changed) + "."


def _multi_sections(summary: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """Horizon table, heat map, sizes and per-task plots, for several tasks or models."""
    tasks = summary["tasks"]
    names = list(next(iter(tasks.values()))["models"])
    head = "".join(f"<th>{escape(t)}</th>" for t in tasks)
    body = "".join(
        f"<tr><th class='l'>{escape(tasks[next(iter(tasks))]['models'][m]['label'])}</th>"
        + "".join(f"<td>{escape(plots.horizon_words(tasks[t]['models'][m]))}</td>"
                  for t in tasks) + "</tr>" for m in names)
    table = (f'<table id="horizon-table"><thead><tr><th class="l">model</th>{head}</tr>'
             f"</thead><tbody>{body}</tbody></table>")
    heat = ("" if "horizons" not in images else
            f"<figure>{_img(images['horizons'], 'horizon heat map')}<figcaption>Colour: the "
            "share of the task's tested lengths remembered. Text: the horizon, and in "
            "brackets its range read from the 95% intervals' lower and upper ends."
            "</figcaption></figure>")
    per_task = "".join(
        f"<h3 id='task-{escape(t)}'>{escape(t)}</h3><p>Axis: {escape(str(info.get('axis_label')))}"
        f"; score: {escape(str(info.get('score')))}; chance "
        f"{_fmt(info.get('chance'))}.</p>"
        + (f"<figure>{_img(images['score_' + t], t + ' score against length')}</figure>"
           if "score_" + t in images else "")
        + _summary_table({**summary, "cells": info["models"]})
        for t, info in tasks.items())
    return (f"<h2>Horizons: model × task</h2>{table}{heat}"
            f"<h2>Score against length, per task</h2>{per_task}")


def _sizes_table(summary: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th class='l'>{escape(e['label'])}</th><td class='l'>{escape(t)}</td>"
        f"<td>{e.get('hidden_size', '–')}</td><td>{e.get('params') or '–'}</td>"
        f"<td>{e.get('state_size') if e.get('state_size') is not None else 'unknown'}</td></tr>"
        for t, info in summary.get("tasks", {}).items() for e in info["models"].values())
    return ("<table id='sizes'><thead><tr><th class='l'>model</th><th class='l'>task</th>"
            "<th>hidden size</th><th>parameters</th><th>state size</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _chosen_table(summary: Mapping[str, Any]) -> str:
    """Which (lr, weight decay) each model, task and length reports, and the dev means."""
    rows = []
    for t, info in summary.get("tasks", {}).items():
        for e in info["models"].values():
            for p in e["lengths"]:
                c = p.get("chosen") or {}
                tried = ", ".join(f"lr {x['lr']:g} wd {x['weight_decay']:g}: "
                                  f"{_fmt(x['dev_mean'])}" for x in c.get("tried", [])
                                  if x["lr"] is not None)
                rows.append(f"<tr><th class='l'>{escape(e['label'])}</th><td class='l'>"
                            f"{escape(t)}</td><td>{p['length']}</td><td>"
                            f"{'' if c.get('lr') is None else format(c['lr'], 'g')}</td>"
                            f"<td>{format(c.get('weight_decay') or 0.0, 'g')}</td>"
                            f"<td class='l'>{escape(tried)}</td></tr>")
    return ("<table id='chosen'><thead><tr><th class='l'>model</th><th class='l'>task</th>"
            "<th>length</th><th>lr</th><th>weight decay</th><th class='l'>mean dev score of "
            f"each setting tried</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _curve_blocks(summary: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    blocks = []
    for t, info in summary.get("tasks", {}).items():
        for m, e in info["models"].items():
            key = curve_key(summary, m, t)
            if key not in images:
                continue
            blocks.append(
                f"<details id='{escape(key)}'><summary>{escape(e['label'])} on {escape(t)}"
                f"</summary><figure>{_img(images[key], e['label'] + ' training curves')}"
                f"<figcaption>{escape(e['label'])} on {escape(t)}: training loss (top, log "
                "scale) and dev score (bottom) against optimiser steps, a panel per length, "
                "a line per seed.</figcaption></figure></details>")
    return "".join(blocks)


def curve_key(summary: Mapping[str, Any], model: str, task: str) -> str:
    """The figure name of a model's curves on a task (``curves_<model>`` for one task)."""
    return f"curves_{model}" if len(summary.get("tasks", {})) <= 1 else f"curves_{model}_{task}"


def _provenance(summary: Mapping[str, Any]) -> str:
    p = summary.get("provenance") or {}
    if not p:
        return ""
    return (f"<p id='provenance'>Ran on {escape(str(p.get('cpu')))} with rnnlab "
            f"{escape(str(p.get('rnnlab')))}, torch {escape(str(p.get('torch')))}, Python "
            f"{escape(str(p.get('python')))}; engine/path of the runs: "
            f"{escape(', '.join(p.get('paths', [])))}.</p>")


def render_memory_report(summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                         images: Mapping[str, bytes], *, protocol_description: str = ""
                         ) -> str:
    """The report as one HTML string. ``images`` maps ``"accuracy_vs_length"`` and
    ``"curves_<cell>"`` to PNG bytes; ``rows`` are this grid's results rows."""
    config = summary["config"]
    runs = summary["runs"]
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
    curves = _curve_blocks(summary, images)
    tasks = summary.get("tasks") or {summary.get("task", "digitsum"): {"models": summary["cells"]}}
    multi = len(tasks) > 1
    horizons = "".join(
        f"<li>{escape((t + ': ') if multi else '')}{escape(e['horizon_text'])}</li>"
        for t, info in tasks.items() for e in info["models"].values())
    n_models = len(next(iter(tasks.values()))["models"])
    grid_size = len(config.get("lr", [0])) * len(config.get("weight_decay", [0]))
    chosen = ("" if grid_size <= 1 else
              "<h2>Chosen hyper-parameters</h2><p>" + escape(summary.get("selection", ""))
              + ".</p>" + _chosen_table(summary))
    if multi:
        main_plots = _multi_sections(summary, images)
    else:
        main_plots = f"""<h2>Score against length</h2>
<figure>{_img(images['accuracy_vs_length'], 'test score against sequence length')}
<figcaption>{escape(_task_caption(summary))} Lines: mean test score
over seeds; bands: {escape(summary['interval'])} Dots: single seeds. Dashed: chance;
dash-dotted: the memoryless baseline; dotted: threshold.</figcaption></figure>
{one_seed}
{_summary_table(summary)}
<p><small>Cells: mean test score ± half-width of the 95% interval (n seeds); green
at or above the threshold.</small></p>"""
    lengths_text = ", ".join(f"{len(v)}" for v in config.get("lengths_by_task", {}).values())
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rnnlab memory experiment</title><style>{_STYLE}</style></head>
<body>
<h1>How far back does each model remember?</h1>
<p class="sub">rnnlab memory experiment on {escape(', '.join(tasks))}: {n_models} models ×
{lengths_text or len(config['lengths'])} lengths × {config['seeds']} seeds
{'' if grid_size <= 1 else f'× {grid_size} hyper-parameter settings'}, protocol
<code>{escape(config['protocol'])}</code>. Generated {generated}.</p>
{_provenance(summary)}
{incomplete}
<h2>Memory horizons</h2>
<ul class="horizons" id="horizons">{horizons}</ul>
<p id="horizon-definition">{escape(summary['horizon_definition'])} Threshold:
{summary['threshold']:g}{'' if chance is None else f'; chance score: {chance:.3f}'}.
The interval over seeds makes the horizon itself uncertain: where a longer length is
reached by the interval's upper end, or the horizon is not reached by its lower end,
the sentence says so.</p>
{main_plots}

<h2>Models: parameters and state size</h2>
{_sizes_table(summary)}
{chosen}

<h2>Training curves</h2>
<p>One per model and task (click to open); each run's own numbers are in
<code>runs/&lt;run&gt;/metrics.csv</code>.</p>
{curves}

<h2>Every run</h2>
<p>One row per run, as in <code>results.csv</code>. The config hash identifies everything
that determines the run's result; rerunning the experiment skips runs whose hash is
already here (failed ones too, unless <code>--retry-failed</code>).</p>
{_results_table(rows, summary)}

<h2>Configuration</h2>
<p id="settings-run">{escape(overrides_sentence(config))}</p>
<p>The protocol <code>{escape(config['protocol'])}</code> as written:
{escape(protocol_description)}</p>
{_settings_table(config)}
<details><summary>Full configuration (JSON)</summary>
<pre>{escape(json.dumps(config, indent=2))}</pre></details>
<p>Files beside this report: <code>results.csv</code>, <code>summary.json</code>,
every figure as <code>.png</code> and <code>.svg</code>, and each run's metrics
(and, on the kernel and trainer paths, its checkpoint) under <code>runs/</code>.</p>
</body></html>
"""


def _task_caption(summary: Mapping[str, Any]) -> str:
    task = summary.get("task", "digitsum")
    if task == "digitsum":
        return ("The task: the input is a sequence of L digits; the answer is the sum of the "
                "first two (19 classes), everything after them is distraction.")
    info = summary.get("tasks", {}).get(task, {})
    return f"The task: {task}; axis: {info.get('axis_label')}; score: {info.get('score')}."


def write_memory_report(out_dir: str | Path, summary: Mapping[str, Any],
                        specs: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Draw the figures, write them as PNG (the headline ones also as SVG) and write
    ``report.html``; return its path. ``specs`` are the grid's
    :class:`~rnnlab.experiments.grid.RunSpec` objects; each finished run's curve is read
    from ``out_dir/runs/<run_id>/metrics.csv``."""
    from rnnlab.protocols import get_protocol

    out_dir = Path(out_dir)
    finished = {r["config_hash"] for r in rows if r.get("status") != FAILED}
    tasks = summary.get("tasks") or {summary.get("task", "digitsum"): {"models": summary["cells"]}}
    figures = {}
    if len(tasks) > 1:
        figures["horizons"] = plots.horizon_heatmap(summary)
        for t, info in tasks.items():
            figures[f"score_{t}"] = plots.score_figure(t, info, summary)
    else:
        t = next(iter(tasks))
        figures["accuracy_vs_length"] = plots.score_figure(t, tasks[t], summary)
    for t, info in tasks.items():
        for index, (model, entry) in enumerate(info["models"].items()):
            by_length: dict[int, list[dict[str, Any]]] = {}
            for spec in specs:
                if (spec.cell != model or getattr(spec, "task", t) != t
                        or spec.config_hash not in finished):
                    continue
                curve = load_curve(out_dir / "runs" / spec.run_id / "metrics.csv")
                if curve is not None:
                    by_length.setdefault(spec.length, []).append(curve)
            if by_length:
                figures[curve_key(summary, model, t)] = plots.curves_figure(
                    f"{entry['label']} on {t}", by_length, index)
    images = {}
    for name, fig in figures.items():
        # The headline figures also as SVG (papers, slides); the per-run curves, one
        # figure per model and task with a panel per length, as PNG only: drawing them
        # twice was a third of a large experiment's report time.
        curves = name.startswith("curves_")
        png, svg = (plots.png_bytes(fig), None) if curves else plots.both(fig)
        images[name] = png
        atomic_write_bytes(out_dir / f"{name}.png", png)
        if svg is not None:
            atomic_write_bytes(out_dir / f"{name}.svg", svg)
    protocol = get_protocol(summary["config"]["protocol"]).description
    html = render_memory_report(summary, rows, images, protocol_description=protocol)
    return atomic_write_text(out_dir / "report.html", html)
