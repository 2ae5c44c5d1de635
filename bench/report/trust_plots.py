"""Plotly figures of the trustworthy-exit section (bench.report.trust), as plain dicts like
bench.report.plots', each with a one-sentence ``caption`` that the page shows under it."""
from __future__ import annotations

import pandas as pd

from bench.report import plots


def _groups(summary: pd.DataFrame, methods: list[str], value: str, unit: str
            ) -> list[tuple[str, list[dict]]]:
    """Per (loss, procedure): per method the mean of ``value`` over seeds against ε, ± std."""
    pal = plots.colors(methods)
    groups = []
    for (loss, procedure), g in summary.groupby(["loss", "procedure"], sort=False):
        traces = []
        for m in methods:
            sub = g[g.method == m].sort_values("epsilon")
            if not len(sub):
                continue
            traces.append({
                "type": "scatter", "mode": "lines+markers", "name": m, "legendgroup": m,
                "x": list(sub.epsilon), "y": list(sub[f"{value}_mean"]),
                "error_y": {"type": "data", "array": [s if s == s else 0
                                                      for s in sub[f"{value}_std"]]},
                "line": {"color": pal[m]},
                "customdata": [[int(n)] for n in sub.n],
                "hovertemplate": f"{plots._esc(m)}, {loss}, {procedure}: ε %{{x:g}}: "
                                 f"%{{y:.3f}}{unit} (%{{customdata[0]}} seeds)<extra></extra>"})
        groups.append((f"{loss}, {procedure}", traces))
    return groups


def risk_against_epsilon(summary: pd.DataFrame, backbone: str, methods: list[str]) -> dict:
    """Test risk of the fitted λ̂ against ε, per method, with the diagonal risk = ε."""
    top = float(summary.epsilon.max()) if len(summary) else 1.0
    diagonal = {"type": "line", "xref": "x", "yref": "y", "x0": 0, "y0": 0, "x1": top,
                "y1": top, "line": {"color": "#555", "dash": "dot", "width": 1}}
    return plots._grouped(
        f"Risk control: test risk against ε, {backbone}", "ε (the risk level asked for)",
        _groups(summary, methods, "test_risk", ""),
        "Test risk of the threshold fitted on the held-out split for each ε (mean ± std over "
        "seeds; pick the loss and procedure on the right): points on or under the dotted "
        "diagonal kept the promise risk ≤ ε.", "test risk at λ̂", [diagonal])


def mmacs_against_epsilon(summary: pd.DataFrame, backbone: str, methods: list[str],
                          last_exit: float | None) -> dict:
    """Mean test MMACs per image at the fitted λ̂ against ε, the last exit's cost dotted."""
    shapes = [] if last_exit is None else [
        {"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": last_exit,
         "y1": last_exit, "line": {"color": "#999", "dash": "dot", "width": 1}}]
    return plots._grouped(
        f"Risk control: cost against ε, {backbone}", "ε (the risk level asked for)",
        _groups(summary, methods, "mmacs", " MMACs"),
        "Mean cost per test image (fvcore MMACs) of exiting at the risk-controlled threshold "
        "for each ε, mean ± std over seeds, against the last exit's cost (dotted): the lower, "
        "the more the promise lets the model exit early.", "mean MMACs per test image", shapes)
