"""Every script of the corpus gets the verdict written in its first lines: each bug its
finding with its severity, each correct script a clean bill (issue 13)."""

from __future__ import annotations

import pytest

from doctor_corpus_runs import FIXTURES, corpus_reports
from rnnlab.doctor.corpus import cases, score, verdict

CASES = cases(FIXTURES)


def test_the_corpus_is_large_and_mixed():
    assert len({c.script for c in CASES}) >= 15
    buggy = {c.expect for c in CASES if c.buggy}
    assert {"state-carried", "axes-mixed", "axes-mixed-in-data", "ignores-past"} <= buggy
    assert sum(not c.buggy for c in CASES) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_case_gets_its_verdict(case):
    _, report = corpus_reports()[case.label]
    result = verdict(case, report)
    assert result["ok"], f"{result}\n{report.format()}"
    if case.buggy:
        finding = next(f for f in report.findings if f.code == case.expect)
        assert finding.where and finding.where[0].file.endswith(case.script.name)
        assert finding.fix


@pytest.mark.slow
def test_rates_are_perfect_on_the_corpus():
    rows = [verdict(case, report) for case, report in corpus_reports().values()]
    summary = score(rows)
    assert summary["detection_rate"] == 1.0 and summary["false_alarm_rate"] == 0.0, rows


def test_verdict_can_fail():
    from rnnlab.doctor.findings import Finding, Report

    case = next(c for c in CASES if not c.buggy)
    sick = Report("x")
    sick.add(Finding("state-carried", "error", "t", "e"))
    assert not verdict(case, sick)["ok"]
    bug = next(c for c in CASES if c.buggy)
    assert not verdict(bug, Report("x"))["ok"]
