"""HTML reports rendered from the results store alone (docs/results-format.md).

``render(results_root, reports_root, suites=None) -> Path`` writes ``reports/index.html``,
a page per suite and a page per run. Plots are plotly figures built as JSON in Python and
drawn by the plotly.min.js copied once to ``reports/assets/``; no network is needed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["render"]


def render(results_root: Path, reports_root: Path, suites: list[str] | None = None) -> Path:
    """Render the reports of ``suites`` (all suites when None); return reports/index.html."""
    from bench.report.html import render as _render  # lazy: keeps bench.tables light

    return _render(Path(results_root), Path(reports_root), suites)
