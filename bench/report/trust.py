"""Trustworthy exits on a suite's page (docs/trustworthy-exits.md): per backbone, the
risk-controlled thresholds' test risk and cost against ε, the validity diagnostic, anytime
quality (monotonicity, correctness decreases, AUROC and ECE per exit) and prediction sets,
each mean ± std over seeds of the default exit rule's blocks in metrics.json. From the
store alone."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.report import trust_plots
from bench.report.common import Table, fmt, make_table, safe
from bench.report.tables import fmt_cell
from bench.store import Suite
from bench.store import rules as R

LTT_LOSS, LTT_PROCEDURE, LTT_EPSILON, LTT_DELTA = "accuracy_gap", "ltt", 0.05, 0.1
LTT_COLUMN = "MMACs at accuracy gap ≤ 5% (LTT, δ 0.1)"
KEYS = ["backbone", "method"]


def _spread(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if values.count() > 1 else math.nan


def per_run(suite: Suite, build) -> pd.DataFrame:
    """Rows of ``build(blocks)`` for every finished run (blocks: its default rule's), with
    backbone, method and seed."""
    rows = []
    for run in suite.runs:
        if run.state != "done":
            continue
        blocks = R.trust_blocks(run.metrics)
        for row in build(blocks):
            rows.append({"backbone": run.backbone, "method": run.method, "seed": run.seed, **row})
    return pd.DataFrame(rows)


def risk_rows(blocks: dict) -> list[dict]:
    rc = blocks.get(R.RISK_CONTROL) or {}
    return [{"loss": r["loss"], "procedure": r["procedure"], "epsilon": r["epsilon"],
             "delta": rc.get("delta"), "test_risk": r["test_risk"], "mmacs": r["mmacs"],
             "top1": r["top1"], "threshold": r["threshold"], "exceeded": bool(r["exceeded"])}
            for r in rc.get("results") or []]


def validity_rows(blocks: dict) -> list[dict]:
    rc = blocks.get(R.RISK_CONTROL) or {}
    validity = rc.get("validity") or {}
    return [dict(r, delta=rc.get("delta"), repeats=validity.get("repeats"),
                 heldout=rc.get("heldout_images")) for r in validity.get("rows") or []]


def monotonicity_rows(blocks: dict) -> list[dict]:
    quality = blocks.get(R.ANYTIME_QUALITY) or {}
    rows = [{"tau": m["tau"], "share": m["violating_share"]}
            for m in quality.get("monotonicity") or []]
    if quality.get("correctness_decreases") is not None:
        rows.append({"tau": math.nan, "share": quality["correctness_decreases"]})
    return rows


def exit_rows(blocks: dict) -> list[dict]:
    quality = blocks.get(R.ANYTIME_QUALITY) or {}
    return [{"exit": e["exit"], "auroc": e["auroc"], "ece": e["ece_percent"]}
            for e in quality.get("exits") or []]


def set_rows(blocks: dict) -> list[dict]:
    quality = blocks.get(R.ANYTIME_QUALITY) or {}
    return [{"alpha": s["alpha"], **e} for s in quality.get("prediction_sets") or []
            for e in s["exits"]]


def summarize(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Mean, std (ddof 1; NaN for one seed) and count over seeds of ``values`` per ``keys``."""
    if not len(frame):
        return pd.DataFrame(columns=keys + [f"{v}_{s}" for v in values
                                            for s in ("mean", "std")] + ["n"])
    g = frame.groupby(keys, sort=False, dropna=False)
    out = g[values].agg(["mean", _spread])
    out.columns = [f"{v}_{'mean' if s == 'mean' else 'std'}" for v, s in out.columns]
    out["n"] = g.size()
    return out.reset_index()


def errors(suite: Suite) -> list[str]:
    """One line per finished run whose blocks could not be computed (the reason)."""
    out = []
    for run in suite.runs:
        blocks = R.trust_blocks(run.metrics) if run.state == "done" else {}
        for key in (R.RISK_CONTROL, R.ANYTIME_QUALITY):
            reason = (blocks.get(key) or {}).get(R.ERROR)
            if reason:
                out.append(f"{run.run_id}: {key}: {reason}")
    return out


# -- the leaderboard's column -------------------------------------------------------------
def ltt_mmacs(suite: Suite) -> pd.DataFrame:
    """Per (backbone, method): mean ± std over seeds of the mean test MMACs at the threshold
    LTT fits for an accuracy gap of at most 5% with δ = 0.1 (default rule), where asked."""
    risk = per_run(suite, risk_rows)
    if not len(risk):
        return pd.DataFrame(columns=KEYS + ["mmacs_mean", "mmacs_std", "n"])
    hit = risk[(risk.loss == LTT_LOSS) & (risk.procedure == LTT_PROCEDURE)
               & (risk.epsilon == LTT_EPSILON) & (risk.delta == LTT_DELTA)]
    return summarize(hit, KEYS, ["mmacs"])


def ltt_cell(frame: pd.DataFrame, backbone: str, method: str) -> str:
    hit = frame[(frame.backbone == backbone) & (frame.method == method)]
    if not len(hit):
        return "–"
    return fmt_cell(hit.mmacs_mean.iloc[0], hit.mmacs_std.iloc[0])


# -- the suite page's section -------------------------------------------------------------
def section(suite: Suite, folder: Path) -> dict | None:
    """{"backbones": [{backbone, figures, tables, details}], "errors": [...], "risk_asked"}
    or None when no finished run has an anytime-quality block (metrics before issue 23)."""
    frames = {"risk": per_run(suite, risk_rows), "validity": per_run(suite, validity_rows),
              "mono": per_run(suite, monotonicity_rows), "exits": per_run(suite, exit_rows),
              "sets": per_run(suite, set_rows)}
    if not len(frames["mono"]) and not len(frames["risk"]):
        return None
    backbones = list(dict.fromkeys(pd.concat([f.backbone for f in frames.values() if len(f)])))
    labels = list(suite.method_labels)
    return {"backbones": [backbone_section(frames, b, labels, folder, suite)
                          for b in backbones],
            "errors": errors(suite),
            "risk_asked": bool(len(frames["risk"]))}


def _of(frame: pd.DataFrame, backbone: str) -> pd.DataFrame:
    return frame[frame.backbone == backbone] if len(frame) else frame


def backbone_section(frames: dict, backbone: str, labels: list[str], folder: Path,
                     suite: Suite) -> dict:
    slug = safe(backbone)
    sec = {"backbone": backbone, "figures": [], "tables": [], "details": []}
    risk = _of(frames["risk"], backbone)
    methods = [m for m in labels if len(risk) and m in set(risk.method)] + \
        [m for m in dict.fromkeys(risk.method if len(risk) else []) if m not in labels]
    if len(risk):
        summary = summarize(risk.assign(exceeded=risk.exceeded.astype(float)),
                            ["method", "loss", "procedure", "epsilon"],
                            ["test_risk", "mmacs", "top1", "threshold", "exceeded"])
        last = last_exit_mmacs(suite, backbone)
        sec["figures"] += [trust_plots.risk_against_epsilon(summary, backbone, methods),
                           trust_plots.mmacs_against_epsilon(summary, backbone, methods, last)]
        sec["details"].append(risk_table(summary, folder, f"risk-control-{slug}.csv"))
    validity = _of(frames["validity"], backbone)
    if len(validity):
        sec["tables"].append(validity_table(validity, folder, f"risk-validity-{slug}.csv"))
    here = [m for m in labels if m in set(_of(frames["mono"], backbone).get("method", []))]
    mono = _of(frames["mono"], backbone)
    if len(mono):
        sec["tables"].append(monotonicity_table(mono, here, folder, f"monotonicity-{slug}.csv"))
    exits = _of(frames["exits"], backbone)
    if len(exits):
        sec["tables"].append(exits_table(exits, here, folder, f"exit-quality-{slug}.csv"))
    sets = _of(frames["sets"], backbone)
    if len(sets):
        sec["tables"].append(sets_table(sets, here, folder, f"prediction-sets-{slug}.csv"))
    return sec


def last_exit_mmacs(suite: Suite, backbone: str) -> float | None:
    for run in suite.runs_of(backbone):
        mmacs = run.costs.get("mmacs")
        if mmacs:
            return float(mmacs[-1])
    return None


def _ordered(frame: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(methods)}
    return frame.assign(_m=frame.method.map(lambda m: order.get(m, len(order)))).sort_values(
        "_m", kind="stable").drop(columns="_m")


def risk_table(summary: pd.DataFrame, folder: Path, filename: str) -> Table:
    """Rows (loss, procedure, method), columns ε: test risk ± std and mean MMACs."""
    epsilons = sorted(dict.fromkeys(summary.epsilon))
    rows = []
    for (loss, procedure, method), g in summary.groupby(["loss", "procedure", "method"],
                                                        sort=False):
        cells = {}
        for r in g.itertuples():
            over = round(r.exceeded_mean * r.n)
            cells[r.epsilon] = (f"{fmt(r.test_risk_mean, 3)} · {fmt(r.mmacs_mean)} MMACs"
                                + (f" · over ε in {over}/{r.n}" if over else ""))
        rows.append([loss, procedure, method] + [cells.get(e, "–") for e in epsilons])
    display = pd.DataFrame(rows, columns=["loss", "procedure", "method"]
                           + [f"ε = {e:g}" for e in epsilons])
    return make_table(display, summary, folder, filename,
                      "Risk control, every value: test risk · mean MMACs per test image",
                      note="λ̂ fitted on the held-out split for each loss, procedure and ε, "
                           "applied unchanged to test; mean over seeds. 'over ε in k/n': the "
                           "test risk exceeded ε in k of n seeds (crc promises the risk on "
                           "average, ucb and ltt with probability 1 − δ per fit).",
                      index=False)


def validity_table(validity: pd.DataFrame, folder: Path, filename: str) -> Table:
    """Rows (loss, procedure), columns ε: the share of held-out halves whose risk exceeded
    ε and the mean risk, mean over methods and seeds; the worst method's share beside it."""
    raw = summarize(validity, ["loss", "procedure", "epsilon", "method"],
                    ["exceeded_share", "mean_risk"])
    epsilons = sorted(dict.fromkeys(raw.epsilon))
    rows = []
    for (loss, procedure), g in raw.groupby(["loss", "procedure"], sort=False):
        cells = {}
        for eps, h in g.groupby("epsilon"):
            cells[eps] = (f"{fmt(100 * h.exceeded_share_mean.mean(), 1)}% "
                          f"(max {fmt(100 * h.exceeded_share_mean.max(), 1)}%) · "
                          f"{fmt(h.mean_risk_mean.mean(), 3)}")
        rows.append([loss, procedure] + [cells.get(e, "–") for e in epsilons])
    display = pd.DataFrame(rows, columns=["loss", "procedure"]
                           + [f"ε = {e:g}" for e in epsilons])
    return make_table(display, raw, folder, filename,
                      "Validity diagnostic: share of held-out halves whose risk exceeded ε "
                      "(worst method) · mean risk",
                      note="On the held-out split alone: λ̂ fitted on a random half, its risk "
                           "measured on the other half, repeated; mean over methods and "
                           "seeds, the worst method in parentheses. ucb and ltt promise a "
                           f"share ≤ δ, crc a mean risk ≤ ε. {noise_note(validity)}",
                      index=False)


def noise_note(validity: pd.DataFrame) -> str:
    """How far a share may stray from δ by chance: the Monte Carlo error of the repeats, and
    the second half's size (at a small ε a handful of images decide 'exceeded')."""
    first = validity.iloc[0]
    delta, repeats, heldout = first.get("delta"), first.get("repeats"), first.get("heldout")
    if any(v is None or v != v for v in (delta, repeats, heldout)):
        return ""
    error = math.sqrt(delta * (1 - delta) / repeats)
    half = int(heldout) - int(heldout) // 2
    eps = float(validity.epsilon.min())
    return (f"δ = {delta:g}; with {int(repeats)} repeats a share's Monte Carlo error is about "
            f"{100 * error:.0f} points, and each risk is measured on {half} images, so at "
            f"ε = {eps:g} a half exceeds ε once {math.floor(eps * half) + 1} of its images "
            "are lost: small ε read high.")


def monotonicity_table(mono: pd.DataFrame, methods: list[str], folder: Path,
                       filename: str) -> Table:
    raw = summarize(mono.assign(tau=mono.tau.fillna(-1.0)), ["method", "tau"], ["share"])
    taus = sorted(t for t in dict.fromkeys(raw.tau) if t >= 0)
    rows = []
    for method, g in _ordered(raw, methods).groupby("method", sort=False):
        cells = {r.tau: fmt_cell(100 * r.share_mean, 100 * r.share_std) for r in g.itertuples()}
        rows.append([method] + [cells.get(t, "–") for t in taus] + [cells.get(-1.0, "–")])
    display = pd.DataFrame(rows, columns=["method"] + [f"τ = {t:g}" for t in taus]
                           + ["correctness decreases"])
    return make_table(display, raw.assign(tau=raw.tau.where(raw.tau >= 0)), folder, filename,
                      "Anytime quality: % of test images whose true-class probability drops "
                      "by more than τ at a later exit",
                      note="Conditional monotonicity violations (lower is better): an image "
                           "violates at τ if p(true class) at some exit exceeds that at a "
                           "later exit by more than τ. 'correctness decreases': % right at "
                           "some exit and wrong at a later one. Mean ± std over seeds, default "
                           "exit rule, test split (nothing fitted).", index=False)


def exits_table(exits: pd.DataFrame, methods: list[str], folder: Path, filename: str) -> Table:
    raw = summarize(exits, ["method", "exit"], ["auroc", "ece"])
    points = sorted(dict.fromkeys(raw["exit"]))
    rows = []
    for method, g in _ordered(raw, methods).groupby("method", sort=False):
        by_exit = {r.exit: r for r in g.itertuples()}
        cells = []
        for k in points:
            r = by_exit.get(k)
            cells.append("–" if r is None else
                         f"{fmt(r.auroc_mean, 3)} · {fmt(r.ece_mean, 1)}%")
        rows.append([method] + cells)
    display = pd.DataFrame(rows, columns=["method"] + [f"exit {int(k)}" for k in points])
    return make_table(display, raw, folder, filename,
                      "Failure prediction and calibration per exit: AUROC · ECE",
                      note="AUROC of the exit's confidence for telling its right test "
                           "predictions from its wrong ones (1: perfect, 0.5: chance); ECE in "
                           "percent with 15 equal-width bins on the max probability (lower is "
                           "better). Mean over seeds, default exit rule.", index=False)


def sets_table(sets: pd.DataFrame, methods: list[str], folder: Path, filename: str) -> Table:
    raw = summarize(sets, ["alpha", "method", "exit"],
                    ["coverage", "mean_size", "nested_coverage", "nested_mean_size",
                     "nested_empty_share"])
    points = sorted(dict.fromkeys(raw["exit"]))
    rows = []
    for alpha in sorted(dict.fromkeys(raw.alpha)):
        sub = _ordered(raw[raw.alpha == alpha], methods)
        for method, g in sub.groupby("method", sort=False):
            by_exit = {r.exit: r for r in g.itertuples()}
            cells = []
            for k in points:
                r = by_exit.get(k)
                cells.append("–" if r is None else
                             f"{fmt(100 * r.coverage_mean, 1)}% · {fmt(r.mean_size_mean, 2)} "
                             f"(nested {fmt(100 * r.nested_coverage_mean, 1)}% · "
                             f"{fmt(r.nested_mean_size_mean, 2)})")
            rows.append([f"{alpha:g} (target {100 * (1 - alpha):g}%)", method] + cells)
    display = pd.DataFrame(rows, columns=["α", "method"] + [f"exit {int(k)}" for k in points])
    return make_table(display, raw, folder, filename,
                      "Prediction sets per exit: coverage · mean set size",
                      note="Split conformal: the set of classes whose probability is at least "
                           "1 − q̂, q̂ from the held-out split, so that it holds the true class "
                           "of ≥ 1 − α of test images. Nested: the intersection of the sets of "
                           "exits 1..n (never grows, may be empty; its coverage is only "
                           "guaranteed ≥ 1 − nα). Mean over seeds, default exit rule.",
                      index=False)
