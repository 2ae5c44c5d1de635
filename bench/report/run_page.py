"""A run's page: its metrics, exit shares, training history, configuration, environment."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import fingerprint
from bench.fileio import write_text
from bench.report import plots
from bench.report.common import LOGITS_NOTE, MACS_NOTE, Table, fmt, make_table, missing
from bench.store import Run, Suite


def render_run(env, suite: Suite, run: Run, folder: Path, stale: bool) -> None:
    t = []
    m = run.metrics or {}
    if m.get("anytime"):
        raw = pd.DataFrame(m["anytime"])
        t.append(make_table(raw.assign(**{c: raw[c].map(fmt) for c in raw if c != "exit"}),
                            raw, folder, f"{run.run_id}-anytime.csv",
                            "Anytime prediction (test)", index=False))
    budgeted = m.get("budgeted") or []
    if budgeted:
        n = max(len(b.get("exit_shares") or []) for b in budgeted)
        raw = pd.DataFrame([{"budget_mmacs": b.get("budget_mmacs"), "accuracy": b.get("accuracy"),
                             "mmacs": b.get("mmacs"),
                             **{f"exit {k + 1}": (b.get("exit_shares") or [None] * n)[k]
                                if k < len(b.get("exit_shares") or []) else None
                                for k in range(n)}} for b in budgeted])
        disp = pd.DataFrame({"budget (MMACs)": raw.budget_mmacs.map(lambda v: f"{v:g}"),
                             "top-1 %": raw.accuracy.map(fmt),
                             "realized MMACs": raw.mmacs.map(fmt),
                             **{c: raw[c].map(lambda v: "–" if missing(v) else f"{100 * v:.1f} %")
                                for c in raw.columns[3:]}})
        t.append(make_table(disp, raw, folder, f"{run.run_id}-exit-shares.csv",
                            "Share of test images leaving at each exit, per budget",
                            note=LOGITS_NOTE, index=False))
    rules = rules_table(run, folder)
    if rules is not None:
        t.append(rules)
    figures = []
    if budgeted:
        figures.append(plots.exit_shares(budgeted))
    hist = run.history
    if hist is not None and len(hist):
        figures.append(plots.history(hist, "Per-exit curves over epochs"))
        values = [c for c in ("train_loss", "effective_share", "heldout_top1") if c in hist]
        wide = hist.pivot_table(index="epoch", columns="exit", values=values)
        wide.columns = [f"{v} exit {int(e)}" for v, e in wide.columns]
        lead = hist.groupby("epoch")[[c for c in ("stage", "lr") if c in hist]].first()
        wide = lead.join(wide).reset_index()
        disp = wide.assign(**{c: wide[c].map(lambda v: "–" if missing(v) else f"{v:.4g}")
                              for c in wide.columns if c != "epoch"})
        t.append(make_table(disp, hist, folder, f"{run.run_id}-history.csv",
                            "History per epoch", index=False,
                            note="train_loss: mean CE of the exit's training objective (– "
                                 "where inactive); effective_share: paper Fig. 3a; "
                                 "heldout_top1: F_n on the held-out split."))
    write_text(folder / f"{run.run_id}.html", env.get_template("run.html").render(
        root="../..", title=f"{run.run_id}", suite=suite, run=run, tables=t, figures=figures,
        stale=stale, code=fingerprint.short(run.fingerprint),
        costs=run.costs, macs_note=MACS_NOTE))


def rules_table(run: Run, folder: Path) -> Table | None:
    """Test top-1 % of the run under every exit rule its metrics hold, at every budget
    (thresholds fitted on held-out per exit, and globally where that fit was asked for)."""
    raw = pd.DataFrame([r for r in run.rule_rows() if r["kind"] == "budget"])
    if not len(raw) or len(raw[["rule", "fit"]].drop_duplicates()) < 2:
        return None  # the default rule alone: the tables above already show it
    wide = raw.pivot_table(index=["rule", "fit"], columns="point", values="top1", sort=False)
    wide.columns = [f"{b:g} MMACs" for b in wide.columns]
    disp = wide.map(fmt).reset_index().rename(columns={"rule": "exit rule",
                                                        "fit": "thresholds"})
    return make_table(disp, raw, folder, f"{run.run_id}-rules.csv",
                      "Budgeted batch under each exit rule (test top-1 %)",
                      note="Thresholds fitted on the held-out split for every rule and budget; "
                           + LOGITS_NOTE, index=False)
