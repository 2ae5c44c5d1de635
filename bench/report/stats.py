"""Significance of a method's difference to a reference method (the suite's baseline, or a
method's reference variant for ablations), per budget and per exit.

- Several seeds in common: paired t-test over seeds (scipy.stats.ttest_rel), pairs by seed.
- One seed in common: paired bootstrap over test images. Per-image correctness comes from
  predictions.pt (logits F_n of every exit) and, at a budget, the thresholds saved in
  metrics.json: an image leaves at the first exit whose max softmax >= its threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy import stats

from bench import evaluate
from bench.evaluate import assign_exits
from bench.report import tables
from bench.store import Run, Suite
from bench.store import rules as R

ALPHA = 0.05  # the significance level of the report's tests (leaderboard, summary)

N_BOOT = 10000
TTEST = "paired t-test over seeds"
BOOTSTRAP = "paired bootstrap over test images"


@dataclass
class Test:
    test: str  # TTEST, BOOTSTRAP or why there is none
    n: int  # seeds (t-test) or test images (bootstrap)
    diff: float  # mean difference, a - b (percentage points)
    low: float = math.nan  # 95% confidence interval of diff
    high: float = math.nan
    p: float = math.nan  # two-sided


def paired_ttest(a: list[float], b: list[float]) -> Test:
    """Paired t-test of a - b over seeds; CI from the t distribution."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n, mean = len(d), float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0:  # every seed gives the same difference: no spread to test against
        return Test(TTEST, n, mean, mean, mean, 1.0 if mean == 0 else math.nan)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    p = float(stats.ttest_rel(a, b).pvalue)
    return Test(TTEST, n, mean, mean - half, mean + half, p)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = N_BOOT,
                     seed: int = 0) -> Test:
    """Bootstrap of the accuracy difference (percent) over images, both models on the same images.

    The per-image difference d takes only the values -1, 0, 1, so resampling M images with
    replacement is exactly a multinomial draw over those three counts (no M x B matrix).
    p: share of resampled means at least as far from the observed mean as the observed mean
    is from 0 (the bootstrap distribution shifted to the null), with the usual +1.
    """
    d = correct_a.astype(int) - correct_b.astype(int)
    m = len(d)
    counts = np.array([(d == -1).sum(), (d == 0).sum(), (d == 1).sum()])
    mean = 100.0 * (counts[2] - counts[0]) / m
    draws = np.random.default_rng(seed).multinomial(m, counts / m, size=n_boot)
    boot = 100.0 * (draws[:, 2] - draws[:, 0]) / m
    p = (1 + np.sum(np.abs(boot - mean) >= abs(mean) - 1e-12)) / (n_boot + 1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return Test(BOOTSTRAP, m, float(mean), float(low), float(high), float(min(1.0, p)))


_PREDICTIONS: dict = {}


def predictions(run: Run) -> dict | None:
    """The run's test logits [N, M, C] (float32 numpy) and targets, cached; None if missing."""
    key = str(run.path)
    if key not in _PREDICTIONS:
        saved = run.read_predictions()  # missing or unreadable (said so): the test is left out
        test = (saved or {}).get("test") or {}
        _PREDICTIONS[key] = None if "logits" not in test else {
            "logits": test["logits"].float().numpy(), "targets": test["targets"].long().numpy()}
    return _PREDICTIONS[key]


def exits_at(logits: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """Exit (0-based) per test image, as budgeted evaluation assigns them
    (bench.evaluate.assign_exits); missing thresholds (the last exit's) let everyone leave."""
    t = list(thresholds) + [-math.inf] * (logits.shape[0] - len(thresholds))
    return np.asarray(assign_exits(torch.from_numpy(logits), t), dtype=int)


def correctness(run: Run, kind: str, point: float) -> np.ndarray | None:
    """Per-test-image correctness of a run at an exit (1-based) or a budget (MMACs)."""
    pred = predictions(run)
    if pred is None:
        return None
    logits, targets = pred["logits"], pred["targets"]
    if kind == "exit":
        return logits[int(point) - 1].argmax(-1) == targets
    for b in (run.metrics or {}).get("budgeted") or []:
        if math.isclose(float(b.get("budget_mmacs", math.nan)), point, rel_tol=1e-9):
            exits = exits_at(logits, b.get("thresholds") or [])
            return logits[exits, np.arange(len(targets))].argmax(-1) == targets
    return None


def _value(run: Run, kind: str, point: float) -> float | None:
    """Top-1 % of a finished run at an exit or a budget, or None where it has none."""
    m = run.metrics or {}
    if kind == "exit":
        hit = [a.get("top1") for a in m.get("anytime") or [] if a.get("exit") == point]
    else:
        hit = [b.get("accuracy") for b in m.get("budgeted") or []
               if math.isclose(float(b.get("budget_mmacs", math.nan)), point, rel_tol=1e-9)]
    return float(hit[0]) if hit and hit[0] is not None else None


def compare(suite: Suite, backbone: str, method: str, reference: str, kind: str,
            point: float) -> Test:
    """``method`` minus ``reference`` at one exit or budget, with the fitting test."""
    return _paired(suite.runs_of(backbone, method, "done"),
                   suite.runs_of(backbone, reference, "done"),
                   lambda r: _value(r, kind, point),
                   lambda r: correctness(r, kind, point))


def _paired(runs_a: list[Run], runs_b: list[Run], value: Callable[[Run], float | None],
            correct: Callable[[Run], np.ndarray | None]) -> Test:
    """The test of a - b over the seeds both sides finished: a paired t-test over two or
    more seeds; for one seed a paired bootstrap over the test images (``correct``: a run's
    per-image correctness), when both have predictions on the same test set."""
    by_seed_a, by_seed_b = {r.seed: r for r in runs_a}, {r.seed: r for r in runs_b}
    a = {s: v for s, r in by_seed_a.items() if (v := value(r)) is not None}
    b = {s: v for s, r in by_seed_b.items() if (v := value(r)) is not None}
    seeds = sorted(set(a) & set(b), key=lambda s: (s is None, s))
    if not seeds:
        return Test("no common seed", 0, math.nan)
    if len(seeds) >= 2:
        return paired_ttest([a[s] for s in seeds], [b[s] for s in seeds])
    s = seeds[0]
    diff = a[s] - b[s]
    ca, cb = correct(by_seed_a[s]), correct(by_seed_b[s])
    if ca is None or cb is None:
        return Test("none (one seed, no predictions.pt)", 1, diff)
    if not np.array_equal(predictions(by_seed_a[s])["targets"],
                          predictions(by_seed_b[s])["targets"]):
        return Test("none (test sets differ)", 1, diff)
    return paired_bootstrap(ca, cb)


def significance(suite: Suite, reference: str, methods: list[str] | None = None,
                 comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every method (or the given ones) against ``reference``, per backbone, budget and exit.

    Columns: backbone, method, reference, kind, point, mean, reference_mean, diff, ci_low,
    ci_high, p, test, n. Means are over seeds (from bench.tables.comparison)."""
    df = tables.comparison(suite) if comparison is None else comparison
    out = []
    for backbone in dict.fromkeys(df["backbone"]):
        sub = df[df["backbone"] == backbone]
        ref = sub[sub["method"] == reference].set_index(["kind", "point"])["mean"]
        for row in sub.itertuples():
            if row.method == reference or (methods is not None and row.method not in methods):
                continue
            if (row.kind, row.point) not in ref.index:
                continue
            t = compare(suite, backbone, row.method, reference, row.kind, row.point)
            out.append({"backbone": backbone, "method": row.method, "reference": reference,
                        "kind": row.kind, "point": row.point, "mean": row.mean,
                        "reference_mean": ref[(row.kind, row.point)], "diff": t.diff,
                        "ci_low": t.low, "ci_high": t.high, "p": t.p, "test": t.test,
                        "n": t.n})
    cols = ["backbone", "method", "reference", "kind", "point", "mean", "reference_mean",
            "diff", "ci_low", "ci_high", "p", "test", "n"]
    return pd.DataFrame(out, columns=cols)


# -- per exit rule (the leaderboard) -----------------------------------------------------
# The same tests under each (combiner, criterion, threshold fit): values from metrics.json's
# ``rules``; with one seed, per-image correctness from predictions.pt under the rule's saved
# thresholds (bench.evaluate: the combined logits scored by the criterion, as correct_at does).

_SCORED: dict = {}


def rule_entry(run: Run, rule: str) -> dict | None:
    """The run's metrics entry of an exit rule, by its label (bench.store.rules)."""
    return next((e for e in run.rules if R.entry_label(e) == rule), None)


def _budget_row(entry: dict | None, fit: str, point: float) -> dict | None:
    key = next((k for k, v in R.FITS.items() if v == fit), R.PER_EXIT)
    for b in (entry or {}).get(key) or []:
        if math.isclose(float(b.get("budget_mmacs", math.nan)), point, rel_tol=1e-9):
            return b
    return None


def scored(run: Run, entry: dict):
    """The run's test split under the entry's combiner and criterion (cached), or None."""
    key = (str(run.path), R.entry_key(entry))
    if key not in _SCORED:
        pred = predictions(run)
        if pred is None:
            _SCORED[key] = None
        else:
            spec = {"name": entry["combiner"], **(entry.get("combiner_options") or {})}
            z, top = evaluate.combine(torch.from_numpy(pred["logits"]), spec)
            _SCORED[key] = evaluate.scored_split(z, top, torch.from_numpy(pred["targets"]),
                                              entry["criterion"])
    return _SCORED[key]


def rule_correctness(run: Run, rule: str, fit: str, point: float) -> np.ndarray | None:
    """Per-test-image correctness of a run under an exit rule at a budget, with the
    thresholds its metrics.json holds for that rule, fit and budget."""
    entry = rule_entry(run, rule)
    row = _budget_row(entry, fit, point)
    if row is None or not row.get("thresholds"):
        return None
    split = scored(run, entry)
    return None if split is None else np.asarray(split.correct(row["thresholds"]))


def compare_rule(suite: Suite, backbone: str, method: str, reference: str, rule: str,
                 fit: str, point: float) -> Test:
    """``method`` minus ``reference`` under one exit rule and fit at one budget."""
    def value(run: Run) -> float | None:
        row = _budget_row(rule_entry(run, rule), fit, point)
        if row is None or row.get("accuracy") is None:
            return None
        return float(row["accuracy"])

    return _paired(suite.runs_of(backbone, method, "done"),
                   suite.runs_of(backbone, reference, "done"), value,
                   lambda r: rule_correctness(r, rule, fit, point))


SIG_COLUMNS = ["backbone", "method", "reference", "rule", "fit", "point", "mean",
               "reference_mean", "diff", "ci_low", "ci_high", "p", "test", "n"]


def rule_significance(suite: Suite, reference: str, table: pd.DataFrame) -> pd.DataFrame:
    """Every method against ``reference`` under the same rule and fit, at every budget of
    ``table`` (bench.report.rules.comparison rows of kind budget)."""
    out = []
    budgets = table[table["kind"] == "budget"]
    ref = budgets[budgets["method"] == reference].set_index(
        ["backbone", "rule", "fit", "point"])["mean"]
    for row in budgets.itertuples():
        key = (row.backbone, row.rule, row.fit, row.point)
        if row.method == reference or key not in ref.index:
            continue
        t = compare_rule(suite, row.backbone, row.method, reference, row.rule, row.fit,
                         row.point)
        out.append({"backbone": row.backbone, "method": row.method, "reference": reference,
                    "rule": row.rule, "fit": row.fit, "point": row.point, "mean": row.mean,
                    "reference_mean": ref[key], "diff": t.diff, "ci_low": t.low,
                    "ci_high": t.high, "p": t.p, "test": t.test, "n": t.n})
    return pd.DataFrame(out, columns=SIG_COLUMNS)
