"""The doctor's corpus (tests/fixtures/doctor), run once per test session and shared by
the tests that read its reports. Run one after the other from the main thread, each
case's child is forked with torch already loaded."""

from __future__ import annotations

import functools
from pathlib import Path

from rnnlab.doctor import run_script
from rnnlab.doctor.corpus import Case, cases
from rnnlab.doctor.findings import Report

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
STEPS = 30


def _run(case: Case) -> Report:
    return run_script(case.script, list(case.args), max_steps=STEPS, max_seconds=90,
                      quiet=True)


@functools.lru_cache(maxsize=1)
def corpus_reports() -> dict[str, tuple[Case, Report]]:
    """Every case's report, by label (``sincos_leak.py --fresh-state``)."""
    all_cases = cases(FIXTURES)
    reports = [_run(case) for case in all_cases]
    return {case.label: (case, report) for case, report in zip(all_cases, reports, strict=True)}


def report_of(label: str) -> Report:
    return corpus_reports()[label][1]
