"""What a suite's numbers show, in one sentence per backbone, for the first screen of its
page and its card on the index. Computed from the comparison table (bench.report.tables)
and the significance tests of bench.report.stats; nothing here names a suite or a method.

Per backbone: the reference method's (the suite's baseline, else its first method) exit 1
against its last exit, top-1 over seeds, and the cost of exit 1 as a share of the last
exit's (is there an accuracy/compute trade-off?); then each other method's difference to
the baseline averaged over the suite's budgets (over the exits where the suite has no
budgets), with how many seeds and at how many of those points the difference is
significant (p < 0.05, the same tests as the page's tables). Example:

    msdnet_tiny_b1s2, 2 seeds: joint's exit 1 is 14.2 points below its last exit (71.8%
    against 86.0%; exit 1 costs 32% of the last); over the 4 budgets, on average, boostnet
    is +0.6 points from joint (significant at 0 of 4, paired t-test over 2 seeds) and
    sequential -28.8 (significant at 4 of 4).
"""
from __future__ import annotations

import math

import pandas as pd

from bench.report import stats
from bench.store import Suite



def _number(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _exits(cmp: pd.DataFrame, method: str) -> pd.DataFrame:
    rows = cmp[(cmp.method == method) & (cmp.kind == "exit")]
    return rows.sort_values("point")


def trade_off(cmp: pd.DataFrame, method: str) -> str | None:
    """"joint's exit 1 is 14.2 points below its last exit (71.8% against 86.0%; exit 1
    costs 32% of the last)", or None without per-exit results."""
    rows = _exits(cmp, method)
    if len(rows) < 2:
        return None
    first, last = rows.iloc[0], rows.iloc[-1]
    gap = last["mean"] - first["mean"]
    where = "below" if gap >= 0 else "above"
    cost = (f"; exit 1 costs {first.mmacs / last.mmacs:.0%} of the last"
            if last.mmacs and not math.isnan(last.mmacs) else "")
    return (f"{method}'s exit 1 is {abs(gap):.1f} points {where} its last exit "
            f"({first['mean']:.1f}% against {last['mean']:.1f}%{cost})")


def differences(suite: Suite, cmp: pd.DataFrame, backbone: str, base: str) -> str | None:
    """"over the 4 budgets, on average, boostnet is +0.6 points from joint (significant at
    0 of 4, paired t-test over 2 seeds) and sequential -28.8 (significant at 4 of 4)"."""
    kind = "budget" if (cmp.kind == "budget").any() else "exit"
    points = sorted(cmp[(cmp.method == base) & (cmp.kind == kind)].point)
    others = [m for m in dict.fromkeys(cmp.method) if m != base]
    parts, test = [], None
    for m in others:
        tests = [stats.compare(suite, backbone, m, base, kind, p) for p in points]
        diffs = [t.diff for t in tests if not math.isnan(t.diff)]
        if not diffs:
            continue
        tested = [t for t in tests if not math.isnan(t.p)]
        hits = sum(t.p < stats.ALPHA for t in tested)
        diff = sum(diffs) / len(diffs)
        if test is None and tested:
            test = _test_name(tested[0])
        sig = (f"significant at {hits} of {len(tested)}" if tested
               else "no significance test")
        parts.append((m, diff, sig))
    if not parts:
        return None
    where = (f"at the {kind}" if len(points) == 1
             else f"over the {len(points)} {kind}s, on average,")
    (m, diff, sig), rest = parts[0], parts[1:]
    first = (f"{where} {m} is {diff:+.1f} points from {base} ({sig}"
             f"{', ' + test if test else ''})")
    more = [f"{m} {diff:+.1f} ({sig})" for m, diff, sig in rest]
    return first + "".join(f", {x}" for x in more[:-1]) + (f" and {more[-1]}" if more else "")


def _test_name(t: stats.Test) -> str:
    if t.test == stats.TTEST:
        return f"paired t-test over {_number(t.n, 'seed')}"
    if t.test == stats.BOOTSTRAP:
        return f"paired bootstrap over {t.n} test images"
    return t.test


def sentence(suite: Suite, cmp: pd.DataFrame, backbone: str) -> str | None:
    """What the numbers of one backbone show, or None before any run finished."""
    sub = cmp[cmp.backbone == backbone]
    if not len(sub):
        return None
    methods = list(dict.fromkeys(sub.method))
    base = suite.baseline if suite.baseline in methods else None
    seeds = int(sub.n.max())
    head = f"{backbone}, {_number(seeds, 'seed')}"
    clauses = [c for c in (trade_off(sub, base or methods[0]),
                           differences(suite, sub, backbone, base) if base else None) if c]
    if not clauses:
        return None
    return f"{head}: " + "; ".join(clauses) + "."


def summary(suite: Suite, cmp: pd.DataFrame) -> list[str]:
    """One sentence per backbone that has finished runs."""
    out = [sentence(suite, cmp, b) for b in dict.fromkeys(cmp["backbone"])] if len(cmp) else []
    return [s for s in out if s]
