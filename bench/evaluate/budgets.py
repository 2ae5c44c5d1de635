"""Budgeted batch classification from saved logits (MSDNet; an evaluation never retrains):
the q sweep, and accuracy at fixed mean budgets with thresholds fitted on the held-out
split only and applied unchanged to the test split (bench.evaluate.thresholds). Early
exiting is simulated from the saved logits of every exit.

Inputs: ``preds`` are F_n, what each exit predicts with (``method.combine``), [N_exits, M, C]
(bench.evaluate.inputs); ``targets`` [M]; ``exit_flops`` the cumulative cost of reaching
exit n (MMACs); budgets in the same unit.
"""
from __future__ import annotations

import math

import numpy as np

from bench.evaluate.inputs import check_budgets, check_exit_costs
from bench.evaluate.thresholds import ScoredSplit, exit_counts, exit_prior, global_thresholds

DEFAULT_QS = [p / 20 for p in range(1, 40)]  # MSDNet / reference sweep: q = 0.05 .. 1.95


def budget_curve(val_preds, val_targets, test_preds, test_targets, exit_flops, qs=None):
    """MSDNet budgeted-batch sweep: one point per q (default 39 values 0.05..1.95).

    Thresholds come from the held-out split (val) alone; test accuracy and realized mean test
    cost are measured with them.
    """
    val = ScoredSplit.from_logits(val_preds, val_targets)
    test = ScoredSplit.from_logits(test_preds, test_targets)
    flops = check_exit_costs(exit_flops, val.n)
    points = []
    for q in DEFAULT_QS if qs is None else qs:
        thresholds = val.thresholds(q)
        points.append({"q": float(q), **test.evaluate(thresholds, flops), "thresholds": thresholds})
    return points


def _search(cost, budget, span, grid=64, tol=1e-12):
    """log q with the highest cost(log q) <= budget: grid scan, then bisect each crossing."""
    xs = np.linspace(-span, span, grid)
    cs = [cost(x) for x in xs]
    found = [(c, x) for x, c in zip(xs, cs) if c <= budget]
    for i in range(grid - 1):
        if cs[i] <= budget < cs[i + 1]:  # the cost crosses the budget in (xs[i], xs[i+1])
            lo, hi = xs[i], xs[i + 1]
            while hi - lo > tol:
                mid = 0.5 * (lo + hi)
                c = cost(mid)
                if c <= budget:
                    lo = mid
                    found.append((c, mid))
                else:
                    hi = mid
    return max(found, key=lambda cx: cx[0])[1]  # first of the highest costs <= budget


def solve_q(val: ScoredSplit, flops, budget: float) -> float:
    """The q whose held-out mean cost is closest to ``budget`` without exceeding it.

    The held-out cost is a step function of q (counts are integers): each step moves one sample
    one exit later, and it rises with q as the prior's mass moves to later exits, so no q hits
    a budget exactly in general. We scan log q on a grid whose ends send every sample to exit 1
    and to the last exit, bisect each grid bracket where the cost crosses the budget down to
    the jump, and keep the q with the highest cost <= budget: within one sample's worth,
    max_k (c_{k+1} - c_k) / M, below the budget. The search runs on the planned cost
    (counts @ flops / M, cheap); if tied held-out confidences make the realized cost of the
    fitted thresholds differ, it is redone on the realized cost on a dense grid: with ties
    that cost has larger steps and is not monotone in q, so the q found is the best of those
    evaluated, not a guaranteed optimum. Reads the held-out split only.
    """
    flops = np.asarray(flops, dtype=np.float64)
    budget = budget + 1e-9 * max(abs(flops[-1]), 1.0)  # float slack in the comparisons
    span = math.log(4 * val.m) + 1  # q = e^-span: round(M * P_1) = M; e^span: round(M * P_N) = M
    planned = lambda x: float(exit_counts(exit_prior(math.exp(x), val.n), val.m) @ flops) / val.m
    # = val.evaluate(val.thresholds(q), flops)["mmacs"], from the counts the fit already has
    realized = lambda x: float((val.fit(math.exp(x))[1] / val.m) @ flops)
    x = _search(planned, budget, span)
    if not math.isclose(realized(x), planned(x), rel_tol=1e-9):
        x = _search(realized, budget, span, grid=1024)  # ties: cost no longer monotone in q
    return math.exp(x)


def solve_global(val: ScoredSplit, flops, budget: float) -> float:
    """The global threshold tau (DeeBERT / ZTW style, a variant of the per-exit fit) with the
    highest held-out mean cost <= ``budget``. Reads the held-out split only.

    Raising tau can only move a sample to a later exit, so the held-out cost is non-decreasing
    in tau and constant between consecutive distinct held-out scores v_j < v_j+1 (on
    (v_j, v_j+1] the samples that leave are those with s >= v_j+1). The supremum of the tau
    within budget is therefore -inf, +inf or a held-out score: bisect over the sorted distinct
    scores of exits 1..N-1.
    """
    flops = np.asarray(flops, dtype=np.float64)
    budget = budget + 1e-9 * max(abs(flops[-1]), 1.0)  # float slack, as in solve_q
    cost = lambda tau: val.evaluate(global_thresholds(tau, val.n), flops)["mmacs"]
    if cost(math.inf) <= budget:
        return math.inf
    values = np.unique(val.scores[:-1])  # ascending
    lo, hi = -1, len(values)  # cost(values[lo]) <= budget (lo = -1: tau = -inf) < cost(values[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(float(values[mid])) <= budget:
            lo = mid
        else:
            hi = mid
    return -math.inf if lo < 0 else float(values[lo])


def accuracy_at_budgets(val_preds, val_targets, test_preds, test_targets, exit_flops, budgets):
    """Budgeted batch classification at fixed mean budgets (same unit as exit_flops).

    For each budget the prior's q is solved on the held-out split (see ``solve_q``), the
    thresholds are fitted on the held-out split, then applied to the test split. Returns one
    dict per budget: budget, accuracy (test, percent), flops (realized mean test cost),
    thresholds, exit_shares (test), q, heldout_flops, heldout_accuracy.
    Budgets outside [cost of exit 1, cost of the last exit] raise ValueError.
    """
    val = ScoredSplit.from_logits(val_preds, val_targets)
    flops = check_exit_costs(exit_flops, val.n)
    check_budgets(budgets, flops)
    test = ScoredSplit.from_logits(test_preds, test_targets)  # used once thresholds are fixed
    rows = []
    for b in budgets:
        q = solve_q(val, flops, float(b))
        thresholds = val.thresholds(q)
        heldout, res = val.evaluate(thresholds, flops), test.evaluate(thresholds, flops)
        rows.append({"budget": float(b), "accuracy": res["accuracy"], "flops": res["mmacs"],
                     "thresholds": thresholds, "exit_shares": res["exit_shares"], "q": q,
                     "heldout_flops": heldout["mmacs"], "heldout_accuracy": heldout["accuracy"]})
    return rows
