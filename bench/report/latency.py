"""The latency section of a suite page, for runs that have a latency.json (``bench
latency``) or ms budgets (metrics.json's ``budgeted_ms``): accuracy against measured ms per
image beside accuracy against MMACs, one curve per runtime, device, threads and batch size;
the speed-up over the full network per batch size; energy per image where NVML measured it
(or why not); and accuracy at the suite's ms budgets, methods ranked at each budget."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Table, fmt, make_table, safe
from bench.report.plots import PALETTE, _layout
from bench.store import Run, Suite
from bench.store.latency import measurements

NOTE = ("Measured by python -m bench latency RUN_DIR with real early exits: nothing past an "
        "image's exit is computed for it. ms per image is the mean (total time over images); "
        "the table adds the median and p95 of the per-batch ms per image. Speed-up: the mean "
        "time of running every image to the last exit over the budget's mean time (and the "
        "same ratio of medians); MACs "
        "ratio: the last exit's MMACs over the budget's realized MMACs. Agreement: share of "
        "test images whose real exit and class equal the simulation from the same forward "
        "(must be 1) and from the saved predictions (differences only within rounding of a "
        "threshold); for onnxruntime the simulation is PyTorch's, so 1 says both runtimes "
        "decide alike. Times depend on the machine, its load and the threads: compare rows "
        "measured together.")
BATCH_NOTE = ("Speed-up over running every image to the last exit (mean ms), per batch size "
              "and runtime. Images that exit leave the batch, so the later blocks run on "
              "smaller batches: the speed-up at batch 1 and at large batches differ.")
MS_NOTE = ("Thresholds fitted on the held-out split with each exit's measured cumulative "
           "latency as its cost (suite budgets.ms), applied to the test split; ms: the mean "
           "of the measured per-exit latencies over the exits the test images take. Ranked "
           "by mean top-1 over seeds at each budget. Measured where the column says.")


def _describe(m: dict) -> str:
    return (f"{m.get('runtime', 'pytorch')} · {m.get('device', '?')}, batch "
            f"{m.get('batch_size', '?')}, {m.get('threads', '?')} thr")


def _label(run: Run, m: dict) -> str:
    return f"{run.method} s{run.seed} · {_describe(m)}"


def _anytime_top1(run: Run) -> list:
    return [a.get("top1") for a in (run.metrics or {}).get("anytime") or []]


def _trace(color: str, label: str, m: dict, x_key: str, top1: list, dash: str | None
           ) -> list[dict]:
    exits, budgets = m.get("exits") or [], m.get("budgets") or []
    line = {"color": color, **({"dash": dash} if dash else {})}
    data = [{"type": "scatter", "mode": "lines+markers", "name": label, "legendgroup": label,
             "line": line, "x": [b.get(x_key) for b in budgets],
             "y": [b.get("accuracy") for b in budgets],
             "hovertemplate": "budget: %{x:.3f}<br>top-1 %{y:.2f} %<extra></extra>"}]
    if len(top1) == len(exits):
        data.append({"type": "scatter", "mode": "markers", "name": f"{label}: exits",
                     "legendgroup": label, "showlegend": False,
                     "marker": {"color": color, "symbol": "diamond-open", "size": 9},
                     "x": [e.get(x_key) for e in exits], "y": top1,
                     "hovertemplate": "every image to an exit: %{x:.3f}<br>top-1 "
                                      "%{y:.2f} %<extra></extra>"})
    return data


def figure(runs: list[Run], x_key: str, title: str, x_title: str) -> dict:
    """Top-1 against ``x_key`` (mean_ms or mmacs): per run and measurement, the fixed
    budgets (line; dashed for onnxruntime) and every image to exit k (markers). In MMACs
    one curve per run (the cost does not depend on where it was measured)."""
    data = []
    for run in runs:
        kept = measurements(run.latency)
        for m in kept[:1] if x_key == "mmacs" else kept:
            label = f"{run.method} s{run.seed}" if x_key == "mmacs" else _label(run, m)
            dash = "dash" if m.get("runtime") == "onnxruntime" and x_key != "mmacs" else None
            color = PALETTE[len({t["legendgroup"] for t in data}) % len(PALETTE)]
            data += _trace(color, label, m, x_key, _anytime_top1(run), dash)
    return {"data": data, "layout": _layout(title, x_title, "top-1 accuracy (%)",
                                            height=380)}


def speedup_table(runs: list[Run], folder: Path, filename: str) -> Table:
    rows = []
    for run in runs:
        for lat in measurements(run.latency):
            load = (lat.get("load_before") or [None])[0]
            for b in lat.get("budgets") or []:
                rows.append({"run": run.run_id, "method": run.method, "seed": run.seed,
                             "runtime": lat.get("runtime", "pytorch"),
                             "device": lat.get("device"), "batch_size": lat.get("batch_size"),
                             "threads": lat.get("threads"), "load_1min": load,
                             "budget_mmacs": b.get("budget_mmacs"), "mmacs": b.get("mmacs"),
                             "accuracy": b.get("accuracy"), "mean_ms": b.get("mean_ms"),
                             "median_ms": b.get("median_ms"), "p95_ms": b.get("p95_ms"),
                             "speedup": b.get("speedup"),
                             "speedup_median": b.get("speedup_median"),
                             "mmacs_ratio": b.get("mmacs_ratio"),
                             "energy_mj": b.get("energy_mj"),
                             "agreement": b.get("agreement"),
                             "agreement_saved": b.get("agreement_saved")})
    raw = pd.DataFrame(rows)
    disp = pd.DataFrame({
        "method": raw.method, "seed": raw.seed,
        "measured on": [f"{rt} · {d}, batch {bs}, {t} thr, load {fmt(ld)}" for rt, d, bs, t, ld
                        in zip(raw.runtime, raw.device, raw.batch_size, raw.threads,
                               raw.load_1min)],
        "budget (MMACs)": raw.budget_mmacs.map(fmt), "MMACs": raw.mmacs.map(fmt),
        "top-1 %": raw.accuracy.map(fmt), "ms/image": raw.mean_ms.map(lambda v: fmt(v, 3)),
        "median / p95 ms": [f"{fmt(a, 3)} / {fmt(b, 3)}" for a, b in
                            zip(raw.median_ms, raw.p95_ms)],
        "speed-up (mean / median)": [f"{fmt(a)}x / {fmt(m)}x" for a, m in
                                     zip(raw.speedup, raw.speedup_median)],
        "MACs ratio": raw.mmacs_ratio.map(lambda v: fmt(v) + "x"),
        "mJ/image": raw.energy_mj.map(lambda v: fmt(v, 3)),
        "agreement": [f"{fmt(a, 3)} / {fmt(s, 3)}" for a, s in
                      zip(raw.agreement, raw.agreement_saved)]}) if len(raw) else raw
    return make_table(disp, raw, folder, filename, "Measured latency at each fixed budget",
                      note=NOTE + " " + energy_note(runs), index=False)


def energy_note(runs: list[Run]) -> str:
    """What the energy column holds: NVML's counter where measured, else why not."""
    reasons = sorted({(m.get("energy") or {}).get("reason") for run in runs
                      for m in measurements(run.latency)
                      if not (m.get("energy") or {}).get("available")} - {None})
    measured = any((m.get("energy") or {}).get("available") for run in runs
                   for m in measurements(run.latency))
    parts = (["mJ/image: GPU energy per image from NVML's energy counter (whole board)."]
             if measured else [])
    if reasons:
        parts.append("No energy where: " + "; ".join(reasons) + ".")
    return " ".join(parts)


# -- per batch size ---------------------------------------------------------------------
def _speedups(runs: list[Run]) -> dict[tuple, dict[int, float]]:
    """{(method, seed, runtime, device, threads, budget): {batch size: speed-up}}."""
    out: dict[tuple, dict[int, float]] = {}
    for run in runs:
        for m in measurements(run.latency):
            for b in m.get("budgets") or []:
                k = (run.method, run.seed, m.get("runtime", "pytorch"), m.get("device"),
                     m.get("threads"), b.get("budget_mmacs"))
                out.setdefault(k, {})[int(m.get("batch_size"))] = b.get("speedup")
    return out


def batch_figure(runs: list[Run], backbone: str) -> dict:
    """Speed-up against batch size (log axis), one line per run, runtime and budget: a
    color per budget, dashed for onnxruntime."""
    speedups = _speedups(runs)
    budgets = sorted({k[5] for k in speedups})
    data = []
    for k, by_size in sorted(speedups.items(), key=str):
        sizes = sorted(by_size)
        method, seed, runtime, device, threads, budget = k
        data.append({"type": "scatter", "mode": "lines+markers",
                     "name": f"{method} s{seed} · {runtime} {device}, {threads} thr · "
                             f"{fmt(budget)} MMACs",
                     "line": {"color": PALETTE[budgets.index(budget) % len(PALETTE)],
                              **({"dash": "dash"} if runtime == "onnxruntime" else {})},
                     "x": sizes, "y": [by_size[s] for s in sizes],
                     "hovertemplate": "batch %{x}: %{y:.2f}x<extra></extra>"})
    layout = _layout(f"Speed-up over the full network per batch size: {backbone}",
                     "batch size", "speed-up (x)", height=380)
    layout["xaxis"].update(type="log", tickvals=sorted({s for by in speedups.values()
                                                        for s in by}))
    return {"data": data, "layout": layout}


def batch_table(runs: list[Run], folder: Path, filename: str) -> Table:
    speedups = _speedups(runs)
    sizes = sorted({s for by in speedups.values() for s in by})
    rows = [{"method": k[0], "seed": k[1], "runtime": k[2], "device": k[3], "threads": k[4],
             "budget_mmacs": k[5], **{f"batch_{s}": by.get(s) for s in sizes}}
            for k, by in speedups.items()]
    raw = pd.DataFrame(rows)
    disp = raw.copy()
    if len(raw):
        disp["budget_mmacs"] = raw.budget_mmacs.map(fmt)
        for s in sizes:
            disp[f"batch_{s}"] = raw[f"batch_{s}"].map(lambda v: fmt(v) + "x" if v == v
                                                       and v is not None else "–")
        disp = disp.rename(columns={"budget_mmacs": "budget (MMACs)",
                                    **{f"batch_{s}": f"batch {s}" for s in sizes}})
    return make_table(disp, raw, folder, filename, "Speed-up per batch size", note=BATCH_NOTE,
                      index=False)


# -- ms budgets -------------------------------------------------------------------------
def _ms_rows(runs: list[Run]) -> list[dict]:
    rows = []
    for run in runs:
        section = (run.metrics or {}).get("budgeted_ms") or {}
        lat = section.get("latency") or {}
        for b in section.get("budgets") or []:
            rows.append({"method": run.method, "seed": run.seed, "run": run.run_id,
                         "measured_on": _describe(lat), "budget_ms": b.get("budget_ms"),
                         "accuracy": b.get("accuracy"), "ms": b.get("ms")})
    return rows


def ms_errors(runs: list[Run]) -> list[str]:
    """The problems runs recorded instead of ms budgets (a budget out of range)."""
    return [f"{run.run_id}: {((run.metrics or {}).get('budgeted_ms') or {}).get('error')}"
            for run in runs if ((run.metrics or {}).get("budgeted_ms") or {}).get("error")]


def ms_figure(runs: list[Run], backbone: str) -> dict:
    """Mean top-1 over seeds against the ms budget, one line per method."""
    raw = pd.DataFrame(_ms_rows(runs))
    data = []
    if len(raw):
        mean = raw.groupby(["method", "measured_on", "budget_ms"], sort=False).accuracy.mean()
        for i, ((method, where), part) in enumerate(mean.groupby(level=[0, 1], sort=False)):
            xs = list(part.index.get_level_values(2))
            data.append({"type": "scatter", "mode": "lines+markers",
                         "name": f"{method} · {where}",
                         "line": {"color": PALETTE[i % len(PALETTE)]}, "x": xs,
                         "y": list(part.values),
                         "hovertemplate": "%{x:.3f} ms: top-1 %{y:.2f} %<extra></extra>"})
    return {"data": data, "layout": _layout(f"Accuracy at ms budgets: {backbone}",
                                            "budget (ms per image, measured latency)",
                                            "top-1 accuracy (%), mean over seeds",
                                            height=380)}


def ms_table(runs: list[Run], folder: Path, filename: str) -> Table:
    """Methods ranked by mean top-1 at each ms budget (the leaderboard in milliseconds)."""
    raw = pd.DataFrame(_ms_rows(runs))
    if len(raw):
        raw = (raw.groupby(["measured_on", "budget_ms", "method"], sort=False)
               .agg(accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
                    ms=("ms", "mean"), seeds=("seed", "count")).reset_index()
               .sort_values(["measured_on", "budget_ms", "accuracy"],
                            ascending=[True, True, False]))
        raw["rank"] = raw.groupby(["measured_on", "budget_ms"]).cumcount() + 1
        disp = pd.DataFrame({
            "budget (ms)": raw.budget_ms.map(lambda v: fmt(v, 3)), "rank": raw["rank"],
            "method": raw.method,
            "top-1 %": [f"{fmt(a)} ± {fmt(s)}" if s == s else fmt(a)
                        for a, s in zip(raw.accuracy, raw.accuracy_std)],
            "ms/image": raw.ms.map(lambda v: fmt(v, 3)), "seeds": raw.seeds,
            "measured on": raw.measured_on})
    else:
        disp = raw
    errors = ms_errors(runs)
    note = MS_NOTE + (" Runs without ms budgets: " + " | ".join(errors) if errors else "")
    return make_table(disp, raw, folder, filename, "Leaderboard at ms budgets", note=note,
                      index=False)


def _has_latency(run: Run) -> bool:
    return any(m.get("budgets") or m.get("exits") for m in measurements(run.latency))


def _has_ms(run: Run) -> bool:
    return bool((run.metrics or {}).get("budgeted_ms"))


def section(suite: Suite, folder: Path) -> list[dict]:
    """Per backbone with measured runs: the figures and tables of the module doc."""
    shown = [r for r in suite.runs if _has_latency(r) or _has_ms(r)]
    out = []
    for backbone in dict.fromkeys(r.backbone for r in shown):
        runs = [r for r in shown if r.backbone == backbone]
        timed = [r for r in runs if _has_latency(r)]
        slug = safe(backbone)
        figures, tables = [], []
        if timed:
            figures += [figure(timed, "mean_ms", f"Accuracy against measured time: {backbone}",
                               "ms per image (measured, mean)"),
                        figure(timed, "mmacs", f"Accuracy against MMACs: {backbone}",
                               "MMACs per image (fvcore multiply-adds)")]
            tables.append(speedup_table(timed, folder, f"latency-{slug}.csv"))
            if len({m.get("batch_size") for r in timed for m in measurements(r.latency)}) > 1:
                figures.append(batch_figure(timed, backbone))
                tables.append(batch_table(timed, folder, f"latency-batch-{slug}.csv"))
        if any(_has_ms(r) for r in runs):
            if _ms_rows(runs):
                figures.append(ms_figure(runs, backbone))
            tables.append(ms_table(runs, folder, f"latency-ms-budgets-{slug}.csv"))
        out.append({"backbone": backbone, "slug": slug, "figures": figures, "tables": tables})
    return out
