"""What a diagnosis leaves on disk, and the script's own error as a finding.

Kept free of torch so that the parent side of ``rnnlab doctor`` stays light; the
figures are drawn (in the child) only when a report is written.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from rnnlab.doctor.findings import Finding, Location, Report
from rnnlab.errors import ensure


def check_out_dir(out: str | os.PathLike) -> None:
    """Raise :class:`RnnlabError` now if ``out`` can never become a writable folder
    (a file in its way, a read-only parent), so nothing runs only to fail at the end.
    Creates nothing."""
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    ensure(existing.is_dir(), f"cannot create the output folder {str(out)!r}: "
                             f"{str(existing)!r} is not a folder")
    ensure(os.access(existing, os.W_OK | os.X_OK),
          f"cannot create the output folder {str(out)!r}: {str(existing)!r} is not writable")


def script_error(error: BaseException, path: Path) -> Finding:
    """The script's own exception (or non-zero exit) as a finding at its line."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve() == path.resolve()]
    where = [Location(str(path), f.lineno or 0, f.line or "") for f in frames[-1:]]
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    hint = ""
    if "hidden" in message.lower() and "size" in message.lower():
        hint = (" A hidden state of the wrong batch size usually means a state carried over "
                "from the previous batch (a smaller last batch, or a state kept across "
                "iterations).")
    return Finding(
        "script-error", "error", f"the script raised {type(error).__name__} before the "
                                 "observation ended",
        f"{type(error).__name__}: {message}",
        "Fix this error first; the diagnosis below covers only what ran before it." + hint,
        {"exception": type(error).__name__}, where)


def write(report: Report, out: str | os.PathLike) -> Report:
    """Write ``findings.json`` and the plots into ``out`` (atomically)."""
    from rnnlab.doctor import plots
    from rnnlab.io import atomic_write_bytes, atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    profiles = list(report.series.get("state_gradients") or [])
    if report.series.get("state_gradients_fresh") and profiles:
        profiles.append({"norms": report.series["state_gradients_fresh"],
                         "label": "a freshly initialised twin, last batch"})
    if profiles:
        figures["state_gradients.png"] = plots.state_gradients(profiles)
    if report.series.get("grad_norms"):
        figures["grad_norms.png"] = plots.grad_norm_series(report.series["grad_norms"])
    if len(report.series.get("lag_profile") or []) >= 2:
        figures["lag_profile.png"] = plots.lag_profile(report.series["lag_profile"])
    if report.series.get("loss"):
        figures["loss.png"] = plots.loss_curve(report.series["loss"])
    for name, png in figures.items():
        atomic_write_bytes(out / name, png)
    report.plots = [str(out / name) for name in figures]
    atomic_write_json(out / "findings.json", report.to_dict())
    return report
