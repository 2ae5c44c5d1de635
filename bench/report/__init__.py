"""HTML reports rendered from the results store alone (docs/results-format.md).

``render(results_root, reports_root, suites=None) -> Path`` writes ``reports/index.html``,
a page per suite with its leaderboard (every method under every exit rule) and a page per
run. Plots are plotly figures built as JSON in Python and
drawn by the plotly.min.js copied once to ``reports/assets/``; no network is needed.
"""

from __future__ import annotations

from bench.report.html import render

__all__ = ["render"]
