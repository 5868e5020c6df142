"""Reports: figures (matplotlib, Agg) and self-contained HTML pages built from results."""

from rnnlab.report.html import render_memory_report, write_memory_report

__all__ = ["render_memory_report", "write_memory_report"]
