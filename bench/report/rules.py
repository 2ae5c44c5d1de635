"""Exit-rule results of a suite over seeds: one row per (backbone, method, rule, fit, budget)
and per (backbone, method, combiner, exit), from every finished run's metrics.json
(bench.store: Suite.rule_rows). The leaderboard's data."""
from __future__ import annotations

import math

import pandas as pd

from bench.store import Suite
from bench.store import rules as R

COLUMNS = ["backbone", "method", "rule", "combiner", "criterion", "fit", "kind", "point",
           "mmacs", "mean", "std", "n", "delta", "stale"]
KEYS = ["backbone", "method", "rule", "combiner", "criterion", "fit", "kind", "point"]


def rule_order(suite: Suite, found: list[str]) -> list[str]:
    """Rule labels in the suite's order (combiners outermost, as evaluation lists them),
    the default rule first; then labels only metrics know (rules of an earlier suite)."""
    ev = suite.config.get("evaluation") or {}
    asked = [R.rule_label(*R.split_combiner(c), crit)
             for c in ev.get("combiners") or [R.DEFAULT_COMBINER]
             for crit in ev.get("criteria") or [R.DEFAULT_CRITERION]]
    default = R.rule_label(R.DEFAULT_COMBINER, {}, R.DEFAULT_CRITERION)
    return list(dict.fromkeys([default] + asked + list(found)))


def comparison(suite: Suite, current: str | None = None) -> pd.DataFrame:
    """Mean and spread over seeds under every exit rule.

    Budget rows: ``rule`` ("combiner / criterion"), ``fit`` (per exit | global), ``point``
    the budget (MMACs), ``mmacs`` the mean realized test cost. Exit rows (anytime): ``rule``
    and ``combiner`` the combiner's label, ``point`` the exit. ``mean``/``std`` (ddof 1, NaN
    for one seed) of test top-1 % over seeds, ``n`` seeds, ``delta`` = mean minus the
    suite's baseline's under the same rule, fit and point, ``stale`` = how many of the
    method's finished runs were made by code other than ``current``."""
    rows = suite.rule_rows
    if not len(rows):
        return pd.DataFrame(columns=COLUMNS)
    rows = rows.fillna({"criterion": "", "fit": ""})
    g = rows.groupby(KEYS, sort=False, dropna=False)
    df = g.agg(mmacs=("mmacs", "mean"), mean=("top1", "mean"),
               std=("top1", lambda s: s.std(ddof=1) if s.count() > 1 else math.nan),
               n=("top1", "count")).reset_index()
    df["delta"] = math.nan
    base = suite.baseline
    if base is not None:
        keys = ["backbone", "rule", "fit", "kind", "point"]
        ref = df[df["method"] == base].set_index(keys)["mean"]
        df["delta"] = df["mean"].to_numpy() - ref.reindex(
            pd.MultiIndex.from_frame(df[keys])).to_numpy()
        df.loc[df["method"] == base, "delta"] = math.nan
    labels = suite.method_labels + list(dict.fromkeys(rows["method"]))
    rules = rule_order(suite, list(dict.fromkeys(rows["rule"])))
    combs = list(dict.fromkeys(rows.loc[rows["kind"] == "exit", "rule"]))
    df = df.assign(_b=df["backbone"].map({b: i for i, b in enumerate(dict.fromkeys(
                       rows["backbone"]))}),
                   _k=(df["kind"] != "budget").astype(int),
                   _r=[rules.index(r) if k == "budget" else combs.index(r)
                       for r, k in zip(df["rule"], df["kind"])],
                   _f=(df["fit"] != R.FITS[R.PER_EXIT]).astype(int),
                   _m=df["method"].map(labels.index))
    df = df.sort_values(["_b", "_k", "_r", "_f", "_m", "point"], kind="stable")
    df["n"] = df["n"].astype(int)
    stale = [(r.backbone, r.method) for r in suite.stale_runs(current)] if current else []
    df["stale"] = [stale.count(key) for key in zip(df["backbone"], df["method"])]
    return df[COLUMNS].reset_index(drop=True)
