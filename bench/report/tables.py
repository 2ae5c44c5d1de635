"""Comparison tables of a suite: accuracy per method at each budget and per exit, over seeds.

Used by the HTML report and by ``python -m bench results SUITE`` (terminal table). Reads the
results store only (a suite folder: run folders' metrics.json, summary.csv as fallback), and
of it the suite's current runs alone (bench.store.Suite.runs): runs of other settings kept in
the folder are never averaged with them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.store import Suite

COLUMNS = ["backbone", "method", "kind", "point", "mmacs", "mean", "std", "n", "delta",
           "stale"]
STALE_MARK = " *"


def comparison(suite_dir: Path | Suite, current: str | None = None) -> pd.DataFrame:
    """Mean and spread over seeds, per backbone, method and budget (and per exit: anytime).

    One row per (backbone, method, kind, point); ``kind`` is ``budget`` (``point`` = the
    budget in MMACs) or ``exit`` (``point`` = exit number, 1-based). Columns: ``mmacs``
    (mean realized test cost at the budget, or the exit's cost), ``mean`` and ``std`` of
    top-1 % over seeds (std with ddof=1, NaN for one seed), ``n`` seeds, ``delta`` = mean
    minus the suite's baseline's mean at the same backbone and point (NaN for the baseline
    itself and where there is none), ``stale``: how many of the (backbone, method)'s
    finished runs were made by code other than ``current`` (a code fingerprint; 0 when
    None). Methods in the suite's order with the baseline first, budgets before exits.
    """
    suite = suite_dir if isinstance(suite_dir, Suite) else Suite(Path(suite_dir))
    rows = suite.rows
    if not len(rows):
        return pd.DataFrame(columns=COLUMNS)
    rows = rows.assign(point=rows["budget_mmacs"].where(rows["kind"] == "budget", rows["exit"]))
    base = suite.baseline
    labels = suite.method_labels + list(dict.fromkeys(rows["method"]))
    order = {m: labels.index(m) for m in dict.fromkeys(rows["method"])}
    border = {b: i for i, b in enumerate(dict.fromkeys(rows["backbone"]))}
    g = rows.groupby(["backbone", "method", "kind", "point"], sort=False)
    df = g.agg(mmacs=("mmacs", "mean"), mean=("top1", "mean"),
               std=("top1", lambda s: s.std(ddof=1) if s.count() > 1 else math.nan),
               n=("top1", "count")).reset_index()
    df["delta"] = math.nan
    if base is not None:
        ref = df[df["method"] == base].set_index(["backbone", "kind", "point"])["mean"]
        key = pd.MultiIndex.from_frame(df[["backbone", "kind", "point"]])
        df["delta"] = df["mean"].to_numpy() - ref.reindex(key).to_numpy()
        df.loc[df["method"] == base, "delta"] = math.nan
    df = df.assign(_b=df["backbone"].map(border), _m=df["method"].map(order),
                   _k=(df["kind"] != "budget").astype(int))
    df = df.sort_values(["_b", "_k", "_m", "point"], kind="stable")
    df["n"] = df["n"].astype(int)
    stale = [(r.backbone, r.method) for r in suite.stale_runs(current)] if current else []
    df["stale"] = [stale.count(key) for key in zip(df["backbone"], df["method"])]
    return df[COLUMNS].reset_index(drop=True)


def fmt_cell(mean: float, std: float, delta: float | None = None) -> str:
    """'71.23 ± 0.45 (+1.20)': mean ± std (std left out for one seed), delta to the baseline."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.2f}"
    if std is not None and not math.isnan(std):
        text += f" ± {std:.2f}"
    if delta is not None and not math.isnan(delta):
        text += f" ({delta:+.2f})"
    return text


def wide(df: pd.DataFrame, kind: str, backbone: str, with_delta: bool = True) -> pd.DataFrame:
    """Methods x points of one backbone as display strings ('mean ± std (delta)'); a method
    whose runs include stale ones is marked with STALE_MARK."""
    sub = df[(df["kind"] == kind) & (df["backbone"] == backbone)]
    if not len(sub):
        return pd.DataFrame()
    label = (lambda p: f"{p:.4g}M") if kind == "budget" else (lambda p: f"exit {int(p)}")
    cells = sub.assign(col=sub["point"].map(label),
                       cell=[fmt_cell(m, s, d if with_delta else None)
                             for m, s, d in zip(sub["mean"], sub["std"], sub["delta"])])
    out = cells.pivot(index="method", columns="col", values="cell")
    cols = list(dict.fromkeys(cells.sort_values("point")["col"]))
    rows = list(dict.fromkeys(cells["method"]))
    out = out.reindex(index=rows, columns=cols).fillna("–")
    stale = set(sub.loc[sub["stale"] > 0, "method"]) if "stale" in sub else set()
    return out.rename(index=lambda m: m + STALE_MARK if m in stale else m)


def _grid(table: pd.DataFrame, corner: str) -> str:
    header = [corner] + [str(c) for c in table.columns]
    body = [[str(i)] + [str(v) for v in row] for i, row in zip(table.index, table.to_numpy())]
    widths = [max(len(r[j]) for r in [header] + body) for j in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in body])


def stale_note(run_ids: list[str]) -> str:
    return (f"{STALE_MARK.strip()} includes finished runs made by other code than the current "
            f"(stale): {', '.join(run_ids)}; `bench run --rerun-stale` trains them again")


def format_terminal(df: pd.DataFrame, stale: list[str] = (), baseline: str | None = None,
                    others: str = "") -> str:
    """The comparison as plain-text tables: per backbone, budgets then anytime exits;
    ``stale``: ids of the stale runs among them (a footnote); ``baseline``: its label;
    ``others``: the runs the folder holds beside the current ones (Suite.others_text), a
    footnote."""
    note = [f"not in the tables: {others} (kept in the results folder; "
            "`bench results SUITE.yaml --set KEY=VALUE` shows other settings)"] if others else []
    if df is None or not len(df):
        return "\n".join(["no finished runs yet"] + note)
    against = f"difference to the baseline {baseline}" if baseline else "no baseline"
    out = [f"top-1 % (mean ± std over seeds; in parentheses: {against})"]
    for backbone in dict.fromkeys(df["backbone"]):
        for kind, title in (("budget", "budgeted batch, average budget in MMACs"),
                            ("exit", "anytime prediction, per exit")):
            table = wide(df, kind, backbone)
            if len(table):
                n = df[(df["backbone"] == backbone) & (df["kind"] == kind)]["n"]
                seeds = f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"
                out += ["", f"{backbone}: {title} (seeds per cell: {seeds})",
                        _grid(table, "method")]
    if stale:
        out += ["", stale_note(list(stale))]
    if note:
        out += [""] + note
    return "\n".join(out)
