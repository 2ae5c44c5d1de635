"""The latency section of a suite page, for runs that have a latency.json (``bench
latency``): accuracy against measured ms per image beside accuracy against MMACs, and the
speed-up table (measured time against always running to the last exit, beside the MMAC
ratio), per run, with where and how it was measured."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Table, fmt, make_table, safe
from bench.report.plots import PALETTE, _layout
from bench.store import Run, Suite

NOTE = ("Measured by python -m bench latency RUN_DIR with real early exits: nothing past an "
        "image's exit is computed for it. ms per image is the mean (total time over images); "
        "the table adds the median and p95 of the per-batch ms per image. Speed-up: the mean "
        "time of running every image to the last exit over the budget's mean time (and the "
        "same ratio of medians); MACs "
        "ratio: the last exit's MMACs over the budget's realized MMACs. Agreement: share of "
        "test images whose real exit and class equal the simulation from the same forward "
        "(must be 1) and from the saved predictions (differences only within rounding of a "
        "threshold). Times depend on the machine, its load and the threads: compare rows "
        "measured together.")


def _label(run: Run) -> str:
    lat = run.latency or {}
    return (f"{run.method} s{run.seed} · {lat.get('device', '?')}, batch "
            f"{lat.get('batch_size', '?')}, {lat.get('threads', '?')} thr")


def _points(run: Run) -> tuple[list[dict], list[dict]]:
    lat = run.latency or {}
    return list(lat.get("exits") or []), list(lat.get("budgets") or [])


def _anytime_top1(run: Run) -> list:
    return [a.get("top1") for a in (run.metrics or {}).get("anytime") or []]


def figure(runs: list[Run], x_key: str, title: str, x_title: str) -> dict:
    """Top-1 against ``x_key`` (mean_ms or mmacs): per run, the fixed budgets (line) and
    every image to exit k (markers)."""
    data = []
    for i, run in enumerate(runs):
        color, label = PALETTE[i % len(PALETTE)], _label(run)
        exits, budgets = _points(run)
        top1 = _anytime_top1(run)
        data.append({"type": "scatter", "mode": "lines+markers", "name": label,
                     "legendgroup": label, "line": {"color": color},
                     "x": [b.get(x_key) for b in budgets], "y": [b.get("accuracy")
                                                                 for b in budgets],
                     "hovertemplate": "budget: %{x:.3f}<br>top-1 %{y:.2f} %<extra></extra>"})
        if len(top1) == len(exits):
            data.append({"type": "scatter", "mode": "markers", "name": f"{label}: exits",
                         "legendgroup": label, "showlegend": False,
                         "marker": {"color": color, "symbol": "diamond-open", "size": 9},
                         "x": [e.get(x_key) for e in exits], "y": top1,
                         "hovertemplate": "every image to an exit: %{x:.3f}<br>top-1 "
                                          "%{y:.2f} %<extra></extra>"})
    return {"data": data, "layout": _layout(title, x_title, "top-1 accuracy (%)",
                                            height=380)}


def speedup_table(runs: list[Run], folder: Path, filename: str) -> Table:
    rows = []
    for run in runs:
        lat = run.latency or {}
        load = (lat.get("load_before") or [None])[0]
        for b in lat.get("budgets") or []:
            rows.append({"run": run.run_id, "method": run.method, "seed": run.seed,
                         "device": lat.get("device"), "batch_size": lat.get("batch_size"),
                         "threads": lat.get("threads"), "load_1min": load,
                         "budget_mmacs": b.get("budget_mmacs"), "mmacs": b.get("mmacs"),
                         "accuracy": b.get("accuracy"), "mean_ms": b.get("mean_ms"),
                         "median_ms": b.get("median_ms"), "p95_ms": b.get("p95_ms"),
                         "speedup": b.get("speedup"),
                         "speedup_median": b.get("speedup_median"),
                         "mmacs_ratio": b.get("mmacs_ratio"),
                         "agreement": b.get("agreement"),
                         "agreement_saved": b.get("agreement_saved")})
    raw = pd.DataFrame(rows)
    disp = pd.DataFrame({
        "method": raw.method, "seed": raw.seed,
        "measured on": [f"{d}, batch {bs}, {t} thr, load {fmt(ld)}" for d, bs, t, ld in
                        zip(raw.device, raw.batch_size, raw.threads, raw.load_1min)],
        "budget (MMACs)": raw.budget_mmacs.map(fmt), "MMACs": raw.mmacs.map(fmt),
        "top-1 %": raw.accuracy.map(fmt), "ms/image": raw.mean_ms.map(lambda v: fmt(v, 3)),
        "median / p95 ms": [f"{fmt(a, 3)} / {fmt(b, 3)}" for a, b in
                            zip(raw.median_ms, raw.p95_ms)],
        "speed-up (mean / median)": [f"{fmt(a)}x / {fmt(m)}x" for a, m in
                                     zip(raw.speedup, raw.speedup_median)],
        "MACs ratio": raw.mmacs_ratio.map(lambda v: fmt(v) + "x"),
        "agreement": [f"{fmt(a, 3)} / {fmt(s, 3)}" for a, s in
                      zip(raw.agreement, raw.agreement_saved)]}) if len(raw) else raw
    return make_table(disp, raw, folder, filename, "Measured latency at each fixed budget",
                      note=NOTE, index=False)


def section(suite: Suite, folder: Path) -> list[dict]:
    """Per backbone with measured runs: two figures and the speed-up table."""
    measured = [r for r in suite.runs if r.latency and (r.latency.get("budgets")
                                                        or r.latency.get("exits"))]
    out = []
    for backbone in dict.fromkeys(r.backbone for r in measured):
        runs = [r for r in measured if r.backbone == backbone]
        slug = safe(backbone)
        out.append({"backbone": backbone, "slug": slug, "figures": [
            figure(runs, "mean_ms", f"Accuracy against measured time: {backbone}",
                   "ms per image (measured, mean)"),
            figure(runs, "mmacs", f"Accuracy against MMACs: {backbone}",
                   "MMACs per image (fvcore multiply-adds)")],
            "table": speedup_table(runs, folder, f"latency-{slug}.csv")})
    return out
