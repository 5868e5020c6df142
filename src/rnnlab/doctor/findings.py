"""What the doctor reports: findings (something is wrong), notes (checked and fine) and
the report that holds them, as text for a person and as JSON for a program.

A finding always carries its evidence as numbers, so a reader can judge it instead of
trusting it, and a fix in one or two sentences. ``severity`` is ``"error"`` for a bug
that stops a recurrent network from learning (state leak, mixed axes, non-finite loss,
a failed script) and ``"warning"`` for a property that makes learning hard (vanishing
or exploding gradients, a model no better than one without memory).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Location:
    """A line of the user's script."""

    file: str
    line: int
    code: str = ""

    def __str__(self) -> str:
        code = f"  {self.code.strip()}" if self.code else ""
        return f"{short_path(self.file)}:{self.line}{code}"


def short_path(path: str) -> str:
    """The path relative to the working directory when it lies inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@dataclass
class Finding:
    """One diagnosis: what is wrong, the numbers that show it, where, and the fix."""

    code: str
    severity: str
    title: str
    evidence: str
    fix: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    where: list[Location] = field(default_factory=list)

    @property
    def is_problem(self) -> bool:
        return self.severity in ("error", "warning")


@dataclass
class Report:
    """Everything the doctor observed and concluded about one script, loop or batch."""

    target: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped: str = ""
    modules: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0  # the whole run, child process and diagnosis included
    timings: dict[str, float] = field(default_factory=dict)  # where that time went

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The report back from :meth:`to_dict` (the child process sends it as JSON)."""
        def finding(d: dict[str, Any]) -> Finding:
            return Finding(**{**d, "where": [Location(**w) for w in d.get("where", [])]})

        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["findings"] = [finding(f) for f in data.get("findings", [])]
        fields["notes"] = [finding(f) for f in data.get("notes", [])]
        return cls(**fields)

    @property
    def healthy(self) -> bool:
        """True when nothing needs fixing: the clean bill of health."""
        return not any(f.is_problem for f in self.findings)

    @property
    def step_unit(self) -> str:
        return "backward pass(es), no torch.optim optimizer" if self.series.get(
            "no_optimizer") else "complete optimizer step(s)"

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def add(self, finding: Finding) -> None:
        (self.findings if finding.is_problem else self.notes).append(finding)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["healthy"] = self.healthy
        return out

    def format(self) -> str:
        """The diagnosis as a person reads it in a terminal."""
        head = f"rnnlab doctor: {self.target}"
        lines = [head, "=" * len(head)]
        seen = (f"observed {self.steps} {self.step_unit} in {self.seconds:.1f} s"
                + (f" ({self.stopped})" if self.stopped else ""))
        lines.append(seen)
        for module in self.modules:
            lines.append(f"  watching {module}")
        lines.append("")
        for finding in self.findings:
            lines += _format_one(finding)
        for note in self.notes:
            lines += _format_one(note)
        if self.healthy:
            checked = [n.title for n in self.notes if n.severity == "ok"]
            lines.append("Clean bill of health; checked: " + "; ".join(checked) + ".")
        else:
            n = len(self.findings)
            lines.append(f"{n} finding{'s' if n != 1 else ''}: "
                         + ", ".join(f.code for f in self.findings))
        if self.plots:
            lines.append("plots: " + ", ".join(self.plots))
        return "\n".join(lines)


def _format_one(f: Finding) -> list[str]:
    mark = {"error": "[error]", "warning": "[warning]", "ok": "[ok]", "info": "[info]"}
    lines = [f"{mark.get(f.severity, f.severity)} {f.code}: {f.title}",
             f"    evidence: {f.evidence}"]
    for i, loc in enumerate(f.where):
        lines.append(f"    {'where:' if i == 0 else '      '} {loc}")
    if f.fix:
        lines.append(f"    fix: {f.fix}")
    lines.append("")
    return lines
