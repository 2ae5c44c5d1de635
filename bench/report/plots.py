"""Plotly figures as plain JSON-ready dicts ({"data": [...], "layout": {...}}).

Built without plotly's Python objects (fast: a report has many small figures); the page
draws them with the plotly.min.js copied to reports/assets/.
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import pandas as pd

from bench.evaluate import paper

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
PAPER_COLOR = {"MSDNet": "#555555", "BoostNet": "#000000"}


def colors(methods: list[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _clean(obj):
    """NaN/inf -> None, numpy scalars -> Python: what JSON (and plotly) accept."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_script_json(fig: dict) -> str:
    """JSON safe to put inside <script>: no '<', '>' or '&' (a label like '</script>')."""
    text = json.dumps(_clean(fig), separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _layout(title: str, xtitle: str, ytitle: str, **extra) -> dict:
    return {"title": {"text": title}, "xaxis": {"title": {"text": xtitle}},
            "yaxis": {"title": {"text": ytitle}}, "hovermode": "closest",
            "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "height": 420,
            "legend": {"orientation": "h", "y": -0.2}, **extra}


def _band(x, mean, std, name: str, color: str) -> list[dict]:
    """Mean line plus a shaded mean ± std band (hidden from the legend, toggled with it)."""
    upper = [m + s if s == s else m for m, s in zip(mean, std)]
    lower = [m - s if s == s else m for m, s in zip(mean, std)]
    return [
        {"type": "scatter", "x": list(x), "y": upper, "mode": "lines", "line": {"width": 0},
         "legendgroup": name, "showlegend": False, "hoverinfo": "skip", "name": name},
        {"type": "scatter", "x": list(x), "y": lower, "mode": "lines", "line": {"width": 0},
         "fill": "tonexty", "fillcolor": _rgba(color, 0.18), "legendgroup": name,
         "showlegend": False, "hoverinfo": "skip", "name": name},
    ]


def _paper_trace(name: str, mmacs: list, top1: list) -> dict:
    """The paper's curve for ``name`` (MSDNet or BoostNet), dashed, labeled as the paper's."""
    return {"type": "scatter", "mode": "lines+markers",
            "name": f"paper: {name} (reference counter MMACs)", "x": mmacs, "y": top1,
            "line": {"color": PAPER_COLOR[name], "dash": "dash"}, "marker": {"symbol": "x"},
            "hovertemplate": f"paper {name}: %{{x:.2f}} MMACs, top-1 %{{y:.2f}} %<extra></extra>"}


def anytime(cmp: pd.DataFrame, backbone: str, methods: list[str], with_paper: bool) -> dict:
    """Top-1 vs MMACs per exit, one line per method: mean, band = ± std over seeds."""
    pal = colors(methods)
    data = []
    for m in methods:
        sub = cmp[(cmp.backbone == backbone) & (cmp.kind == "exit") & (cmp.method == m)]
        if not len(sub):
            continue
        sub = sub.sort_values("point")
        data += _band(sub.mmacs, sub["mean"], sub["std"], m, pal[m])
        data.append({"type": "scatter", "mode": "lines+markers", "name": m, "legendgroup": m,
                     "x": list(sub.mmacs), "y": list(sub["mean"]), "line": {"color": pal[m]},
                     "customdata": [[int(p), s, int(n)] for p, s, n in
                                    zip(sub.point, sub["std"], sub.n)],
                     "hovertemplate": f"{_esc(m)}<br>exit %{{customdata[0]}}: %{{x:.2f}} MMACs"
                                      "<br>top-1 %{y:.2f} % ± %{customdata[1]:.2f}"
                                      " (%{customdata[2]} seeds)<extra></extra>"})
    if with_paper:
        data += [_paper_trace(name, paper.ANYTIME_MMACS, top1)
                 for name, top1 in paper.ANYTIME_TOP1.items()]
    return {"data": data, "layout": _layout(f"Anytime prediction: {backbone}",
                                            "MMACs per image (fvcore multiply-adds)",
                                            "top-1 accuracy (%)")}


def budgeted(suite, cmp: pd.DataFrame, backbone: str, methods: list[str],
             with_paper: bool) -> dict:
    """Budgeted batch: the q-curve per method (mean over seeds, point by point) with the
    fixed budgets marked (vertical lines; markers at the realized cost, ± std)."""
    pal = colors(methods)
    data, budgets = [], []
    for m in methods:
        curves = [r.metrics.get("curve") or [] for r in suite.runs_of(backbone, m, "done")
                  if r.metrics]
        curves = [c for c in curves if c]
        if curves:
            n = min(len(c) for c in curves)
            frame = pd.DataFrame([{"i": i, "q": c[i].get("q"), "acc": c[i].get("accuracy"),
                                   "mmacs": c[i].get("mmacs")} for c in curves for i in range(n)])
            mean = frame.groupby("i").mean(numeric_only=True)
            data.append({"type": "scatter", "mode": "lines", "name": f"{m} (curve)",
                         "legendgroup": m, "x": list(mean.mmacs), "y": list(mean.acc),
                         "customdata": list(mean.q), "line": {"color": pal[m]},
                         "hovertemplate": f"{_esc(m)}, q=%{{customdata:.2f}}: %{{x:.2f}} "
                                          "MMACs, top-1 %{y:.2f} %<extra></extra>"})
        sub = cmp[(cmp.backbone == backbone) & (cmp.kind == "budget") & (cmp.method == m)]
        if len(sub):
            budgets += list(sub.point)
            data.append({"type": "scatter", "mode": "markers", "name": f"{m} at budgets",
                         "legendgroup": m, "x": list(sub.mmacs), "y": list(sub["mean"]),
                         "error_y": {"type": "data", "array": [s if s == s else 0
                                                               for s in sub["std"]]},
                         "marker": {"color": pal[m], "size": 9, "symbol": "diamond"},
                         "customdata": [[p, int(k)] for p, k in zip(sub.point, sub.n)],
                         "hovertemplate": f"{_esc(m)}, budget %{{customdata[0]}} MMACs: "
                                          "realized %{x:.2f} MMACs, top-1 %{y:.2f} % "
                                          "(%{customdata[1]} seeds)<extra></extra>"})
    if with_paper:
        data += [_paper_trace(name, list(points), list(points.values()))
                 for name, points in paper.BUDGETED_TOP1.items()]
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": b, "x1": b, "y0": 0,
               "y1": 1, "line": {"color": "#999", "dash": "dot", "width": 1}}
              for b in sorted(set(budgets))]
    return {"data": data, "layout": _layout(
        f"Budgeted batch classification: {backbone} (dotted: fixed budgets)",
        "average MMACs per test image (fvcore multiply-adds)", "top-1 accuracy (%)",
        shapes=shapes)}


PANELS = [("heldout_top1", "held-out top-1 (%)"), ("train_loss", "training loss"),
          ("effective_share", "effective training samples share")]


def history(hist: pd.DataFrame, title: str) -> dict:
    """Per-exit curves over epochs in three panels: held-out top-1, training loss and the
    share of effective training samples (paper Fig. 3). ``hist``: history.csv rows, several
    runs (seeds) are averaged per (epoch, exit)."""
    hist = hist.groupby(["epoch", "exit"], as_index=False).mean(numeric_only=True)
    exits = sorted(hist["exit"].unique())
    data, layout = [], _layout(title, "", "", height=380)
    width = 1 / len(PANELS)
    for j, (col, label) in enumerate(PANELS):
        ax = "" if j == 0 else str(j + 1)
        layout[f"xaxis{ax}"] = {"domain": [j * width + 0.04, (j + 1) * width - 0.04],
                                "anchor": f"y{ax}", "title": {"text": "epoch"}}
        layout[f"yaxis{ax}"] = {"anchor": f"x{ax}", "title": {"text": label}}
        if col not in hist:
            continue
        for k, n in enumerate(exits):
            sub = hist[hist["exit"] == n]
            data.append({"type": "scatter", "mode": "lines+markers", "name": f"exit {int(n)}",
                         "legendgroup": f"exit {int(n)}", "showlegend": j == 0,
                         "x": list(sub.epoch), "y": list(sub[col]), "xaxis": f"x{ax}",
                         "yaxis": f"y{ax}", "line": {"color": PALETTE[k % len(PALETTE)]},
                         "hovertemplate": f"exit {int(n)}, epoch %{{x}}: {label} "
                                          "%{y:.4g}<extra></extra>"})
    return {"data": data, "layout": layout}


def exit_shares(budgeted_rows: list[dict]) -> dict:
    """Stacked bars: share of test images leaving at each exit, per budget."""
    rows = [b for b in budgeted_rows if b.get("exit_shares")]
    n = max((len(b["exit_shares"]) for b in rows), default=0)
    xs = [f"{b.get('budget_mmacs')} MMACs" for b in rows]
    data = [{"type": "bar", "name": f"exit {k + 1}", "x": xs,
             "y": [100 * b["exit_shares"][k] if k < len(b["exit_shares"]) else None
                   for b in rows], "marker": {"color": PALETTE[k % len(PALETTE)]},
             "hovertemplate": f"exit {k + 1}: %{{y:.1f}} % of test images<extra></extra>"}
            for k in range(n)]
    return {"data": data, "layout": _layout("Test images leaving at each exit, per budget",
                                            "budget", "share of test images (%)",
                                            barmode="stack")}


def _esc(text: str) -> str:
    """Labels go into plotly hover templates, which render HTML: escape them."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("%{", "%&#123;"))


def _dropdown(groups: list[tuple[str, int]], n_traces: int) -> list[dict]:
    """A plotly menu that shows one group of traces at a time (``groups``: label and how
    many consecutive traces it has)."""
    buttons, start = [], 0
    for label, count in groups:
        visible = [start <= i < start + count for i in range(n_traces)]
        buttons.append({"label": label, "method": "restyle", "args": [{"visible": visible}]})
        start += count
    return [{"buttons": buttons, "direction": "down", "showactive": True, "x": 1.0,
             "xanchor": "right", "y": 1.02, "yanchor": "bottom"}]


def _grouped(title: str, xtitle: str, groups: list[tuple[str, list[dict]]],
             caption: str = "", ytitle: str = "top-1 accuracy (%)",
             shapes: Sequence[dict] = ()) -> dict:
    """Traces in groups, the first group visible, a menu (top right) to switch between them;
    a one-line title (a second line, <br><sub>, is drawn above the figure by Chromium, cut
    off: what it said goes into the caption under the figure)."""
    data = [{**t, "visible": i == 0} for i, (_, traces) in enumerate(groups) for t in traces]
    layout = _layout(title, xtitle, ytitle, margin={"l": 60, "r": 20, "t": 70, "b": 50},
                     **({"shapes": list(shapes)} if shapes else {}))
    layout["title"].update({"x": 0.01, "xanchor": "left"})
    if len(groups) > 1:
        layout["updatemenus"] = _dropdown([(g, len(t)) for g, t in groups], len(data))
    return {"data": data, "layout": layout, **({"caption": caption} if caption else {})}


def mean_curve(curves: list[list[dict]]) -> pd.DataFrame:
    """Point-by-point mean of several runs' q-curves (columns q, accuracy, mmacs)."""
    n = min(len(c) for c in curves)
    frame = pd.DataFrame([{"i": i, "q": c[i].get("q"), "accuracy": c[i].get("accuracy"),
                           "mmacs": c[i].get("mmacs")} for c in curves for i in range(n)])
    return frame.groupby("i").mean(numeric_only=True)


def rule_heatmap(means: pd.DataFrame, backbone: str) -> dict:
    """Exit rules (rows) x methods (columns): test top-1 averaged over the budgets, each
    cell written out; ``means`` as bench.report.leaderboard.rule_means gives it."""
    rules, methods = [str(r) for r in means.index], [str(m) for m in means.columns]
    z = [[None if v != v else round(float(v), 2) for v in row] for row in means.to_numpy()]
    layout = _layout(f"Every exit rule: {backbone}", "method", "",
                     height=max(300, 110 + 24 * len(rules)),
                     margin={"l": 20, "r": 20, "t": 50, "b": 50})
    layout["yaxis"].update({"automargin": True, "autorange": "reversed"})
    layout["xaxis"].update({"automargin": True, "title": {"text": ""}})
    layout["title"].update({"x": 0.01, "xanchor": "left"})
    return {"data": [{"type": "heatmap", "x": methods, "y": rules, "z": z,
                      "colorscale": "Viridis", "texttemplate": "%{z:.1f}",
                      "colorbar": {"title": {"text": "top-1 %"}},
                      "hovertemplate": "%{x}, %{y}: top-1 %{z:.2f} % (mean over budgets)"
                                       "<extra></extra>"}],
            "layout": layout,
            "caption": "Test top-1 % of each method (columns) under each exit rule (rows: "
                       "combiner / criterion, per-exit thresholds fitted on held-out), averaged "
                       "over the budgets and seeds; brighter is more accurate."}


def rule_curves(curves: dict[str, dict[str, list[list[dict]]]], points: pd.DataFrame,
                backbone: str, methods: list[str]) -> dict:
    """Budgeted batch under each exit rule (a menu picks the rule): per method the mean
    q-curve over seeds (per-exit thresholds) and its fixed budgets (markers, ± std).
    ``curves``: rule -> method -> the runs' curves; ``points``: rules.comparison rows of
    kind budget and fit per exit."""
    pal = colors(methods)
    groups = []
    for rule, by_method in curves.items():
        traces = []
        for m in methods:
            runs = [c for c in by_method.get(m, []) if c]
            if runs:
                mean = mean_curve(runs)
                traces.append({"type": "scatter", "mode": "lines", "name": f"{m} (curve)",
                               "legendgroup": m, "x": list(mean.mmacs),
                               "y": list(mean.accuracy), "line": {"color": pal[m]},
                               "hovertemplate": f"{_esc(m)}, {_esc(rule)}: %{{x:.2f}} MMACs, "
                                                "top-1 %{y:.2f} %<extra></extra>"})
            sub = points[(points.rule == rule) & (points.method == m)]
            if len(sub):
                traces.append({"type": "scatter", "mode": "markers", "name": f"{m} at budgets",
                               "legendgroup": m, "x": list(sub.mmacs), "y": list(sub["mean"]),
                               "error_y": {"type": "data", "array": [s if s == s else 0
                                                                     for s in sub["std"]]},
                               "marker": {"color": pal[m], "size": 9, "symbol": "diamond"},
                               "hovertemplate": f"{_esc(m)}: realized %{{x:.2f}} MMACs, "
                                                "top-1 %{y:.2f} %<extra></extra>"})
        groups.append((rule, traces))
    return _grouped(f"Budgeted batch per exit rule: {backbone}",
                    "average MMACs per test image (fvcore multiply-adds)", groups,
                    "Test top-1 against the average cost per image under the exit rule picked "
                    "on the right (per-exit thresholds fitted on held-out): each method's "
                    "curve over the exit prior's q and its fixed budgets (diamonds, ± std "
                    "over seeds).")


def rule_anytime(points: pd.DataFrame, backbone: str, methods: list[str]) -> dict:
    """Anytime top-1 per exit under each combiner (a menu picks it), mean ± std over seeds.
    ``points``: rules.comparison rows of kind exit."""
    pal = colors(methods)
    groups = []
    for combiner in dict.fromkeys(points["rule"]):
        traces = []
        for m in methods:
            sub = points[(points.rule == combiner) & (points.method == m)].sort_values("point")
            if len(sub):
                traces.append({"type": "scatter", "mode": "lines+markers", "name": m,
                               "x": list(sub.mmacs), "y": list(sub["mean"]),
                               "error_y": {"type": "data", "array": [s if s == s else 0
                                                                     for s in sub["std"]]},
                               "line": {"color": pal[m]},
                               "hovertemplate": f"{_esc(m)}, {_esc(combiner)}: %{{x:.2f}} "
                                                "MMACs, top-1 %{y:.2f} %<extra></extra>"})
        groups.append((combiner, traces))
    return _grouped(f"Anytime prediction per combiner: {backbone}",
                    "MMACs per image (fvcore multiply-adds)", groups,
                    "Test top-1 at every exit (mean ± std over seeds) of the predictions "
                    "that the combiner picked on the right makes from exits 1..n.")
