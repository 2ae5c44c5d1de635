"""A suite's leaderboard page, ``reports/<suite>/leaderboard.html``: methods x exit rules x
budgets (mean ± std over seeds, the difference to the suite's baseline under the same rule
and its significance), anytime accuracy under each combiner, training cost, and published
numbers beside ours only where our protocol matches theirs. From the store alone."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.evaluate import paper
from bench.fileio import write_text
from bench.report import plots, rules, stats, trust
from bench.report.common import (LOGITS_NOTE, MACS_NOTE, Table, fmt, make_table, missing,
                                 safe, status_of, test_columns)
from bench.report.tables import STALE_MARK, fmt_cell
from bench.store import Suite
from bench.store import rules as R

PAGE = "leaderboard.html"
REGIME_NOTE = (" 'regime': how the method's runs were trained (docs/regimes.md): joint, every "
               "parameter from the start; disjoint, the backbone and its final head first, "
               "then the other exits on the frozen backbone; mixed, the same first phase, "
               "then every parameter with the method's loss.")
BETTER, WORSE = " ▲", " ▼"
NOTES = [
    "Thresholds of every exit rule are fitted on the held-out split (images held out of "
    "the training set), for each budget, and applied unchanged to the test split; nothing "
    "on this page is tuned, fitted or selected on the test split, and every rule the suite "
    "asks for is listed (no best rule is picked).",
    LOGITS_NOTE + " Exit n costs the cumulative MMACs of exits 1..n; the rules' own "
    "elementwise work is not counted.",
    f"Significance: each method against the suite's baseline under the same rule, fit and "
    f"budget: {stats.TTEST} (scipy.stats.ttest_rel) with several seeds, {stats.BOOTSTRAP} "
    f"({stats.N_BOOT} resamples; per-image correctness from predictions.pt under the rule's "
    f"saved thresholds) with one. {BETTER.strip()} / {WORSE.strip()}: better / worse than the "
    f"baseline at p < {stats.ALPHA}. The p-values are not corrected for the many comparisons on "
    "this page: read them as a guide, not as a family-wise test.",
    "The patience criterion scores c_n + max softmax (PABEE's counter, ties broken by "
    "confidence) so that it can meet any budget; PABEE itself uses one integer patience.",
]


def render_leaderboard(env, suite: Suite, folder: Path, stale: list[str],
                       current: str | None) -> Path:
    """Write the page (and its tables' CSV files) into the suite's report folder."""
    cmp = rules.comparison(suite, current)
    base = suite.baseline
    sig = (stats.rule_significance(suite, base, cmp) if base is not None
           else pd.DataFrame(columns=stats.SIG_COLUMNS))
    labels = suite.method_labels + [m for m in cmp["method"] if m not in suite.method_labels]
    ltt = trust.ltt_mmacs(suite)
    sections = [backbone_section(suite, cmp, sig, b, labels, folder, ltt)
                for b in dict.fromkeys(cmp["backbone"])]
    path = folder / PAGE
    write_text(path, env.get_template("leaderboard.html").render(
        root="..", title=f"{suite.name}: leaderboard", suite=suite,
        status=status_of(suite, stale), sections=sections, baseline=base,
        cost=training_cost_table(suite, folder), published=published_table(suite, cmp, folder),
        notes=NOTES, macs_note=MACS_NOTE, stale=stale))
    return path


def backbone_section(suite: Suite, cmp: pd.DataFrame, sig: pd.DataFrame, backbone: str,
                     labels: list[str], folder: Path, ltt: pd.DataFrame) -> dict:
    """The ranking first (default rule), the methods x rules heatmap, the figures; the full
    per-rule tables in ``details`` (shown collapsed)."""
    slug = safe(backbone)
    sub = cmp[cmp.backbone == backbone]
    here = [m for m in labels if m in set(sub.method)]
    budgets, exits_ = sub[sub.kind == "budget"], sub[sub.kind == "exit"]
    sig = sig[sig.backbone == backbone]
    sec = {"backbone": backbone, "ranking": ranking_table(
               sub, sig, ltt[ltt.backbone == backbone], folder, f"ranking-{slug}.csv",
               regimes(suite, here)),
           "heatmap": None, "figures": [], "details": []}
    per_exit = budgets[budgets.fit == R.FITS[R.PER_EXIT]]
    if per_exit["rule"].nunique() > 1:
        sec["heatmap"] = plots.rule_heatmap(rule_means(per_exit, here), backbone)
    for key, fit in R.FITS.items():
        if (budgets.fit == fit).any():
            name = f"leaderboard-{slug}.csv" if key == R.PER_EXIT else \
                f"leaderboard-global-{slug}.csv"
            sec["details"].append(budget_table(budgets, sig, folder, name, suite.baseline, fit))
    if len(budgets):
        sec["figures"].append(plots.rule_curves(rule_curves(suite, backbone, per_exit),
                                                per_exit, backbone, here))
    if len(exits_):
        sec["details"].append(anytime_table(exits_, folder, f"leaderboard-anytime-{slug}.csv"))
        sec["figures"].append(plots.rule_anytime(exits_, backbone, here))
    if len(sig):
        sec["details"].append(significance_table(sig, folder,
                                                 f"leaderboard-significance-{slug}.csv"))
    sec["detail_rows"] = sum(len(t.rows) for t in sec["details"])
    return sec


DEFAULT_RULE = R.rule_label(R.DEFAULT_COMBINER, {}, R.DEFAULT_CRITERION)


def ranking_points(sub: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The default rule's rows the ranking is built from: its budgets (per-exit thresholds),
    or, in a suite without budgets, the last exit's anytime top-1; and what they are."""
    budgets = sub[(sub.kind == "budget") & (sub.rule == DEFAULT_RULE)
                  & (sub.fit == R.FITS[R.PER_EXIT])]
    if len(budgets):
        return budgets, "budget"
    exits_ = sub[(sub.kind == "exit") & (sub.rule == R.DEFAULT_COMBINER)]
    return exits_[exits_.point == exits_.point.max()], "exit"


def regimes(suite: Suite, labels: list[str]) -> dict[str, str] | None:
    """Each method label's training regime, where the suite ran any other than joint (a
    column of the ranking and of the training cost); None where every run is joint."""
    found = {m: suite.regime_of(m) for m in labels}
    return found if any(r != "joint" for r in found.values()) else None


def ranking_table(sub: pd.DataFrame, sig: pd.DataFrame, ltt: pd.DataFrame, folder: Path,
                  filename: str, regime: dict[str, str] | None = None) -> Table | None:
    """Methods x budgets under the default rule (max softmax, per-exit thresholds), sorted by
    the mean over budgets, marked where significantly better or worse than the baseline; and
    the cost of exiting under a risk guarantee (LTT, accuracy gap <= 5%, delta 0.1).
    ``regime``: each method's training regime, a column after the method's."""
    points, kind = ranking_points(sub)
    if not len(points):
        return None
    p = {(s.method, s.point): (s.p, s.diff) for s in sig[(sig.rule == DEFAULT_RULE)
                                                       & (sig.fit == R.FITS[R.PER_EXIT])]
         .itertuples()}
    columns = sorted(dict.fromkeys(points["point"]))
    rows, raw = [], []
    for method, g in points.groupby("method", sort=False):
        stale = STALE_MARK if (g["stale"] > 0).any() else ""
        cells = {r.point: fmt_cell(r.mean, r.std, r.delta)
                 + _marker(*p.get((method, r.point), (math.nan, math.nan)))
                 for r in g.itertuples()}
        score = float(g["mean"].mean())
        rows.append((score, [method + stale] + [cells.get(b, "–") for b in columns]
                     + [fmt(score), trust.ltt_cell(ltt, g.backbone.iloc[0], method)]))
        hit = ltt[ltt.method == method]
        raw.append({"method": method, **{f"{b:g}": m for b, m in zip(g.point, g["mean"])},
                    "mean": score,
                    "ltt_mmacs_mean": hit.mmacs_mean.iloc[0] if len(hit) else math.nan,
                    "ltt_mmacs_std": hit.mmacs_std.iloc[0] if len(hit) else math.nan})
    order = sorted(range(len(rows)), key=lambda i: -rows[i][0])
    heads = ([f"{b:.4g} MMACs" for b in columns] if kind == "budget"
             else [f"exit {int(b)}" for b in columns])
    display = pd.DataFrame([[str(k + 1)] + rows[i][1] for k, i in enumerate(order)],
                           columns=["rank", "method"] + heads
                           + ["mean over budgets" if kind == "budget" else "mean",
                              trust.LTT_COLUMN])
    raw = pd.DataFrame(raw).iloc[order]
    if regime:
        display.insert(2, "regime", [regime.get(raw_row["method"], "joint")
                                     for raw_row in raw.to_dict("records")])
        raw.insert(1, "regime", display["regime"].to_numpy())
    what = ("test top-1 % at each average budget" if kind == "budget"
            else "test top-1 % at the last exit (this suite has no budgets)")
    return make_table(display, raw, folder, filename,
                      f"Ranking: {what}, default exit rule",
                      note=f"Max softmax with per-exit thresholds fitted on held-out; mean ± "
                           f"std over seeds, in parentheses the difference to the baseline, "
                           f"{BETTER.strip()}/{WORSE.strip()} significant at p < {stats.ALPHA}; "
                           f"sorted by the mean over the columns. '{trust.LTT_COLUMN}': mean "
                           "test cost per image of the threshold Learn-then-Test fits on "
                           "held-out so that, with probability 0.9, exiting early loses at most "
                           "5 points of accuracy against the last exit (docs/trustworthy-"
                           "exits.md); – where the suite's evaluation.risk_control does not "
                           "ask for it. Every other exit rule: the heatmap and the tables "
                           "below." + (REGIME_NOTE if regime else ""), index=False)


def rule_means(per_exit: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Rules x methods: test top-1 averaged over the budgets (per-exit fit, mean over seeds)."""
    means = per_exit.groupby(["rule", "method"], sort=False)["mean"].mean().unstack("method")
    return means.reindex(index=list(dict.fromkeys(per_exit["rule"])),
                         columns=[m for m in methods if m in means.columns])


def rule_curves(suite: Suite, backbone: str, per_exit: pd.DataFrame
                ) -> dict[str, dict[str, list[list[dict]]]]:
    """rule -> method -> every finished run's q-curve under that rule."""
    out: dict[str, dict[str, list]] = {}
    for rule in dict.fromkeys(per_exit["rule"]):
        out[rule] = {m: [(stats.rule_entry(r, rule) or {}).get("curve") or []
                         for r in suite.runs_of(backbone, m, "done")]
                     for m in dict.fromkeys(per_exit["method"])}
    return out


def _marker(p: float, diff: float) -> str:
    if missing(p) or missing(diff) or p >= stats.ALPHA:
        return ""
    return BETTER if diff > 0 else WORSE


def budget_table(budgets: pd.DataFrame, sig: pd.DataFrame, folder: Path, filename: str,
                 base: str | None, fit: str) -> Table:
    """One threshold fit: rows (rule, method), columns the budgets: mean ± std (difference
    to the baseline under the same rule), marked where significant."""
    budgets = budgets[budgets.fit == fit]
    p = {(s.method, s.rule, s.point): (s.p, s.diff) for s in sig[sig.fit == fit].itertuples()}
    points = sorted(dict.fromkeys(budgets["point"]))
    rows = []
    for (rule, method), g in budgets.groupby(["rule", "method"], sort=False):
        stale = STALE_MARK if (g["stale"] > 0).any() else ""
        cells = {r.point: fmt_cell(r.mean, r.std, r.delta)
                 + _marker(*p.get((method, rule, r.point), (math.nan, math.nan)))
                 for r in g.itertuples()}
        rows.append([rule, method + stale] + [cells.get(b, "–") for b in points])
    display = pd.DataFrame(rows, columns=["exit rule", "method"]
                           + [f"{b:.4g} MMACs" for b in points])
    raw = budgets.merge(sig[["method", "rule", "fit", "point", "p", "test"]],
                        on=["method", "rule", "fit", "point"], how="left")
    against = (f"the difference to the baseline ({base}) under the same rule" if base
               else "no baseline in this suite")
    what = ("per-exit thresholds (MSDNet's geometric exit prior; the default)"
            if fit == R.FITS[R.PER_EXIT] else
            "one global threshold at every exit but the last (a variant)")
    return make_table(display, raw, folder, filename,
                      f"Leaderboard: top-1 % at each average budget, {what}",
                      note=f"Rows: exit rule (combiner / criterion) and method; mean ± "
                           f"standard deviation over seeds (n-1); in parentheses {against}; "
                           f"{BETTER.strip()}/{WORSE.strip()} significant at p < {stats.ALPHA} "
                           "(see the differences below).", index=False)


def anytime_table(exits_: pd.DataFrame, folder: Path, filename: str) -> Table:
    """Rows (combiner, method), columns the exits: test top-1 of the combined prediction."""
    points = sorted(dict.fromkeys(exits_["point"]))
    rows = []
    for (combiner, method), g in exits_.groupby(["rule", "method"], sort=False):
        cells = {r.point: fmt_cell(r.mean, r.std, r.delta) for r in g.itertuples()}
        rows.append([combiner, method] + [cells.get(k, "–") for k in points])
    display = pd.DataFrame(rows, columns=["combiner", "method"]
                           + [f"exit {int(k)}" for k in points])
    return make_table(display, exits_, folder, filename,
                      "Anytime prediction under each combiner: top-1 % per exit",
                      note="The prediction at exit n of the combined logits (criteria do not "
                           "matter here); mean ± std over seeds, in parentheses the difference "
                           "to the baseline under the same combiner.", index=False)


def significance_table(sig: pd.DataFrame, folder: Path, filename: str) -> Table:
    display = pd.DataFrame({
        "exit rule": sig.rule, "thresholds": sig.fit, "method": sig.method,
        "budget": [f"{p:g} MMACs" for p in sig.point], "top-1 %": sig["mean"].map(fmt),
        f"{sig.reference.iloc[0]} %": sig.reference_mean.map(fmt),
        **test_columns(sig)})
    return make_table(display, sig, folder, filename,
                      f"Difference to the baseline ({sig.reference.iloc[0]}) per exit rule",
                      note="Percentage points, method minus baseline, both under the same "
                           "exit rule, threshold fit and budget.", index=False)


COST_KEYS = ("forward_passes_per_step", "backward_passes_per_step", "seconds_per_epoch",
             "epochs_per_stage", "peak_memory_mb")


def training_cost_table(suite: Suite, folder: Path) -> Table:
    """Per (backbone, method): passes per step, wall-clock per epoch and in all, epochs per
    stage and peak memory, from each finished run's training.json ("–" where not recorded)."""
    raw = []
    for backbone in suite.backbones:
        for method in suite.method_labels:
            runs = suite.runs_of(backbone, method, "done")
            if runs:
                raw.append(cost_row(backbone, method, runs))
    frame = pd.DataFrame(raw, columns=["backbone", "method", "runs", "recorded", *COST_KEYS,
                                       "seconds_total", "devices"])
    regime = regimes(suite, suite.method_labels) or {}
    display = pd.DataFrame({
        "backbone": frame.backbone, "method": frame.method,
        **({"regime": frame.method.map(regime)} if regime else {}),
        "forward / backward passes per step": [
            "–" if missing(f) and missing(b) else f"{_num(f)} / {_num(b)}"
            for f, b in zip(frame.forward_passes_per_step, frame.backward_passes_per_step)],
        "seconds per epoch": frame.seconds_per_epoch.map(fmt),
        "training time": frame.seconds_total.map(_duration),
        "epochs per stage": frame.epochs_per_stage.map(
            lambda v: "–" if not v else " + ".join(str(e) for e in v)),
        "peak memory (MiB)": frame.peak_memory_mb.map(lambda v: fmt(v, 0)),
        "device": frame.devices.map(lambda v: v or "–"),
        "runs recorded": [f"{k} of {n}" for k, n in zip(frame.recorded, frame.runs)]})
    return make_table(display, frame.drop(columns=["devices"]), folder,
                      "leaderboard-training-cost.csv", "Training cost",
                      note="From each run's training.json: passes per training step (forward "
                           "and backward, as the method's step runs them), mean wall-clock "
                           "seconds per epoch and the total (mean over seeds), epochs of each "
                           "stage and the peak memory (largest over seeds). Wall-clock depends "
                           "on the device and its load: compare runs of one machine. – : not "
                           "recorded by the code that made the run.", index=False)


def cost_row(backbone: str, method: str, runs: list) -> dict:
    """One leaderboard row from the runs' training.json (docs/results-format.md): passes per
    step weighted by each stage's epochs, mean training seconds per epoch, the total (mean
    over seeds, post-training phase included), epochs per stage, the largest peak memory."""
    records = [r.training for r in runs if r.training.get("stages")]
    first = records[0] if records else {}
    stages = first.get("stages") or []
    epochs = sum(st["epochs"] for st in stages) or math.nan

    def per_step(key: str) -> float:
        return sum(st["epochs"] * st["passes_per_step"][key] for st in stages) / epochs \
            if stages else math.nan

    seconds = [np.asarray([e["train_seconds"] for e in rec.get("epochs") or []], float)
               for rec in records]
    seconds = [s for s in seconds if len(s)]
    totals = [s.sum() + float((rec.get("post_training") or {}).get("seconds") or 0.0)
              for s, rec in zip(seconds, records)]
    memory = [e["peak_memory_mib"] for rec in records for e in rec.get("epochs") or []
              if e.get("peak_memory_mib") is not None]
    return {"backbone": backbone, "method": method, "runs": len(runs), "recorded": len(records),
            "forward_passes_per_step": per_step("forward"),
            "backward_passes_per_step": per_step("backward"),
            "seconds_per_epoch": float(np.mean(np.concatenate(seconds))) if seconds else math.nan,
            "epochs_per_stage": [st["epochs"] for st in stages],
            "peak_memory_mb": max(memory) if memory else math.nan,
            "seconds_total": float(np.mean(totals)) if totals else math.nan,
            "devices": ", ".join(dict.fromkeys(str(r.environment.get("device")) for r in runs
                                               if r.environment.get("device")))}


def _num(v) -> str:
    return "–" if missing(v) else f"{v:g}"


def _duration(seconds: float) -> str:
    if missing(seconds):
        return "–"
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def published_table(suite: Suite, cmp: pd.DataFrame, folder: Path) -> Table | None:
    """Each published number of a curve one of the suite's methods declares (suite.json
    ``paper``), beside ours (the default rule, mean over seeds) only where our runs followed
    the publication's protocol; else "not comparable" and the differences."""
    raw = []
    for label, curve in ((m["label"], m["paper"]) for m in suite.method_entries
                         if m.get("paper")):
        for pub in paper.PUBLISHED.get(curve, []):
            for backbone in suite.backbones:
                runs = suite.runs_of(backbone, label, "done")
                if runs:
                    raw += published_rows(pub, label, backbone, runs[0].config, cmp)
    if not raw:
        return None
    frame = pd.DataFrame(raw)
    display = frame.assign(**{"published top-1": frame["published top-1"].map(
                                  lambda v: v if isinstance(v, str) else fmt(v)),
                              "published MMACs": frame["published MMACs"].map(fmt),
                              "our top-1": [fmt_cell(m, s) for m, s in
                                            zip(frame["our top-1"], frame["our std"])],
                              "our MMACs": frame["our MMACs"].map(fmt),
                              "difference": frame["difference"].map(
                                  lambda v: fmt(v, sign=True))}).drop(columns=["our std"])
    return make_table(display, frame, folder, "leaderboard-published.csv",
                      "Published numbers beside ours",
                      note="Ours: the default rule (max softmax, per-exit thresholds), mean ± "
                           "std over seeds, shown only where every protocol item matches "
                           "(data set, backbone, epochs, learning rate and schedule, batch, "
                           "the split thresholds are fitted on, checkpoint choice, exit rule); "
                           "otherwise the differences are listed. Published MMACs come from "
                           "the source's own counter.", index=False)


def published_rows(pub: paper.Published, label: str, backbone: str, config: dict,
                   cmp: pd.DataFrame) -> list[dict]:
    """One row per published point where our runs are comparable; one row per kind
    (anytime, budgeted) listing the published values and the differences where not."""
    rows = []
    for kind in ("exit", "budget"):
        points = published_points(pub, kind)
        if not points:
            continue
        diffs = paper.protocol_differences(pub.protocol, config, rule=(
            R.DEFAULT_COMBINER, R.DEFAULT_CRITERION, R.FITS[R.PER_EXIT]), anytime=kind == "exit")
        base = {"published": pub.curve, "source": pub.source, "our method": label,
                "backbone": backbone}
        if diffs:
            at = (f"exits 1..{len(points)}" if kind == "exit" else "budgets " + ", ".join(
                f"{p:g}" for _, p, _, _ in points) + " MMACs")
            rows.append({**base, "at": at,
                         "published top-1": ", ".join(f"{t:.2f}" for _, _, t, _ in points),
                         "published MMACs": math.nan, "our top-1": math.nan,
                         "our std": math.nan, "our MMACs": math.nan, "difference": math.nan,
                         "protocol": "not comparable: " + "; ".join(diffs)})
            continue
        for at, point, top1, mm in points:
            ours = our_point(cmp, backbone, label, kind, point)
            rows.append({**base, "at": at, "published top-1": top1, "published MMACs": mm,
                         "our top-1": ours["mean"] if ours is not None else math.nan,
                         "our std": ours["std"] if ours is not None else math.nan,
                         "our MMACs": ours["mmacs"] if ours is not None else math.nan,
                         "difference": ours["mean"] - top1 if ours is not None else math.nan,
                         "protocol": "comparable" if ours is not None
                         else "comparable, but our runs have no such point"})
    return rows


def published_points(pub: paper.Published, kind: str) -> list[tuple[str, float, float, float]]:
    """(label, point, published top-1, published MMACs) of one kind of a publication."""
    if kind == "exit":
        return [(f"exit {k + 1}", k + 1, top1,
                 pub.anytime_mmacs[k] if k < len(pub.anytime_mmacs) else math.nan)
                for k, top1 in enumerate(pub.anytime_top1)]
    return [(f"{b:g} MMACs budget", b, top1, b) for b, top1 in pub.budgeted_top1.items()]


def our_point(cmp: pd.DataFrame, backbone: str, label: str, kind: str, point: float):
    """Our mean at an exit (combiner none) or budget (default rule, per-exit fit), or None."""
    rule = (R.DEFAULT_COMBINER if kind == "exit"
            else R.rule_label(R.DEFAULT_COMBINER, {}, R.DEFAULT_CRITERION))
    hit = cmp[(cmp.backbone == backbone) & (cmp.method == label) & (cmp.kind == kind)
              & (cmp.rule == rule) & (cmp.point == point)]
    if kind == "budget":
        hit = hit[hit.fit == R.FITS[R.PER_EXIT]]
    return hit.iloc[0] if len(hit) else None
