"""The doctor's own test corpus: realistic training scripts, each with the verdict it
must get, written in the script's first lines::

    # expect: state-carried error
    # expect [--fresh-state]: clean

``clean`` means no finding that needs fixing; otherwise the named finding must be
present with that severity. :func:`score` turns reports into the detection rate (bugs
found), the false-alarm rate (correct scripts flagged) and the overhead.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.doctor.findings import Report

_EXPECT = re.compile(r"^# expect(?: \[(?P<args>[^\]]*)\])?: (?P<verdict>.+)$")


@dataclass(frozen=True)
class Case:
    """One script run with one set of arguments, and the verdict it must get."""

    script: Path
    args: tuple[str, ...] = ()
    expect: str = "clean"  # "clean" or a finding code
    severity: str = ""
    label: str = field(default="", compare=False)

    @property
    def buggy(self) -> bool:
        return self.expect != "clean"


def cases(folder: str | Path) -> list[Case]:
    """Every ``# expect`` line of every script in ``folder``, in name order."""
    found = []
    for script in sorted(Path(folder).glob("*.py")):
        for line in script.read_text(encoding="utf-8").splitlines()[:5]:
            m = _EXPECT.match(line.strip())
            if not m:
                continue
            args = tuple(shlex.split(m.group("args") or ""))
            words = m.group("verdict").split()
            label = script.name + (f" {' '.join(args)}" if args else "")
            found.append(Case(script, args, words[0], words[1] if len(words) > 1 else "",
                              label))
    return found


def verdict(case: Case, report: Report) -> dict[str, Any]:
    """Did ``report`` give ``case`` its verdict? Also the findings it gave."""
    problems = [(f.code, f.severity) for f in report.findings if f.is_problem]
    if case.buggy:
        ok = (case.expect, case.severity or "error") in problems
    else:
        ok = not problems
    return {"case": case.label, "expect": case.expect + (f" ({case.severity})"
                                                          if case.severity else ""),
            "got": ", ".join(f"{c} ({s})" for c, s in problems) or "clean",
            "ok": ok, "buggy": case.buggy}


def score(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Detection rate over the buggy cases, false-alarm rate over the correct ones."""
    buggy = [r for r in rows if r["buggy"]]
    clean = [r for r in rows if not r["buggy"]]
    return {"buggy": len(buggy), "clean": len(clean),
            "detected": sum(r["ok"] for r in buggy),
            "false_alarms": sum(not r["ok"] for r in clean),
            "detection_rate": sum(r["ok"] for r in buggy) / max(1, len(buggy)),
            "false_alarm_rate": sum(not r["ok"] for r in clean) / max(1, len(clean))}
