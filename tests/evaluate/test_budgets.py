"""bench.evaluate.budgets: the q sweep, the budget searches and budgeted accuracy, with
thresholds fitted on held-out data only."""
import math

import pytest
import torch

from bench import evaluate as ev

FLOPS3 = [10.0, 20.0, 40.0]


def random_split(seed, n=4, m=250, c=10):
    g = torch.Generator().manual_seed(seed)
    # later exits sharper, so accuracy and confidence vary across exits
    logits = torch.randn(n, m, c, generator=g) * torch.linspace(1, 3, n)[:, None, None]
    return logits, torch.randint(c, (m,), generator=g)


def test_realized_cost_is_shares_times_costs_and_q_near_zero():
    g = torch.Generator().manual_seed(0)
    val, test = torch.randn(4, 200, 10, generator=g), torch.randn(4, 300, 10, generator=g)
    yv, yt = torch.randint(10, (200,), generator=g), torch.randint(10, (300,), generator=g)
    flops = [1.0, 3.0, 4.0, 9.0]
    curve = ev.budget_curve(val, yv, test, yt, flops)
    assert [p["q"] for p in curve] == pytest.approx([k / 20 for k in range(1, 40)])
    for p in curve:
        assert p["mmacs"] == pytest.approx(sum(s * c for s, c in zip(p["exit_shares"], flops)))
        shares = torch.bincount(ev.assign_exits(test, p["thresholds"]), minlength=4) / 300
        assert p["exit_shares"] == pytest.approx(shares.tolist())
    (tiny_q,) = ev.budget_curve(val, yv, test, yt, flops, qs=[1e-6])
    assert tiny_q["exit_shares"] == [1.0, 0.0, 0.0, 0.0] and tiny_q["mmacs"] == 1.0
    assert tiny_q["accuracy"] == pytest.approx(ev.anytime_accuracy(test, yt)[0])


def test_budget_solver_hits_heldout_budget_within_one_sample():
    val, yv = random_split(2)
    test, yt = random_split(3, m=180)
    flops = [1.0, 2.0, 4.0, 8.0]
    budgets = [1.0, 1.7, 2.5, 5.0, 7.99, 8.0]
    rows = ev.accuracy_at_budgets(val, yv, test, yt, flops, budgets)
    step = max(b - a for a, b in zip(flops, flops[1:])) / val.shape[1]  # one sample's worth
    for r, b in zip(rows, budgets):
        assert set(r) >= {"budget", "accuracy", "flops", "thresholds", "exit_shares", "q",
                          "heldout_flops"}
        assert r["budget"] == b
        assert b - step - 1e-9 <= r["heldout_flops"] <= b + 1e-9
        # the reported thresholds, refitted from q on held-out data, reproduce the row
        split = ev.ScoredSplit.from_logits(val, yv)
        assert split.thresholds(r["q"]) == r["thresholds"]
        assert split.evaluate(r["thresholds"], flops)["mmacs"] == pytest.approx(r["heldout_flops"])
        assert r["flops"] == pytest.approx(sum(s * c for s, c in zip(r["exit_shares"], flops)))
    assert rows[0]["heldout_flops"] == 1.0 and rows[-1]["heldout_flops"] == 8.0
    assert rows[-1]["exit_shares"] == [0.0, 0.0, 0.0, 1.0]
    assert rows[0]["flops"] == 1.0 and rows[-1]["flops"] == 8.0  # extreme budgets hold on test


def test_thresholds_never_depend_on_test_data():
    val, yv = random_split(4)
    test, yt = random_split(5, m=120)
    flops, budgets = [1.0, 2.0, 4.0, 8.0], [2.0, 5.0]
    base = ev.accuracy_at_budgets(val, yv, test, yt, flops, budgets)
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(0))
    permuted = ev.accuracy_at_budgets(val, yv, test[:, perm], yt[perm], flops, budgets)
    other_test, other_y = random_split(6, m=60)
    changed = ev.accuracy_at_budgets(val, yv, other_test * 5, other_y, flops, budgets)
    for a, b, c in zip(base, permuted, changed):
        assert a["thresholds"] == b["thresholds"] == c["thresholds"]
        assert a["q"] == b["q"] == c["q"] and a["heldout_flops"] == c["heldout_flops"]
        assert a["accuracy"] == pytest.approx(b["accuracy"])  # a permutation changes nothing
    curve_a = ev.budget_curve(val, yv, test, yt, flops, qs=[0.5, 1.5])
    curve_c = ev.budget_curve(val, yv, other_test, other_y, flops, qs=[0.5, 1.5])
    assert [p["thresholds"] for p in curve_a] == [p["thresholds"] for p in curve_c]


def test_budget_out_of_range_and_bad_flops_raise():
    val, yv = random_split(7, n=3, m=20)
    with pytest.raises(ValueError, match=r"budget 9\.5 .*\[10\.0, 40\.0\]"):
        ev.accuracy_at_budgets(val, yv, val, yv, FLOPS3, [20.0, 9.5])
    with pytest.raises(ValueError, match="budget 41"):
        ev.accuracy_at_budgets(val, yv, val, yv, FLOPS3, [41])
    with pytest.raises(ValueError, match="entries for 3 exits"):
        ev.accuracy_at_budgets(val, yv, val, yv, [1.0, 2.0], [1.5])


@pytest.mark.parametrize("tied", [False, True])
def test_budget_solver_beats_a_dense_q_scan(tied):
    val, yv = random_split(8, n=3, m=60, c=4)
    if tied:  # few distinct logits: many held-out confidences tie, realized != planned counts
        val = val.round()
    split, flops = ev.ScoredSplit.from_logits(val, yv), [1.0, 2.0, 5.0]
    scan = [split.evaluate(split.thresholds(q), flops)["mmacs"]
            for q in torch.logspace(-4, 4, 2001, dtype=torch.float64).tolist()]
    for b in (1.3, 2.2, 3.1, 4.4):
        (row,) = ev.accuracy_at_budgets(val, yv, val, yv, flops, [b])
        assert row["heldout_flops"] <= b + 1e-9
        assert row["heldout_flops"] >= max(c for c in scan if c <= b) - 1e-9


# 2 exits, 4 held-out samples, scores of any scale (here negative, like -entropy)
TOY_SCORES = [[-0.1, -0.9, -0.3, -0.8], [-0.5, -0.6, -0.2, -0.4]]
TOY_PRED = [[0, 1, 1, 0], [0, 1, 1, 1]]
TOY_Y = [0, 0, 1, 1]
FLOPS2 = [1.0, 3.0]


def test_global_threshold_hand_computed():
    split = ev.ScoredSplit(TOY_SCORES, TOY_PRED, TOY_Y)
    # cost(tau) = 1 + 2 * (share with exit-1 score < tau); exit-1 scores -.1 -.3 -.8 -.9
    assert ev.global_thresholds(-0.3, 2) == [-0.3, -math.inf]
    assert ev.solve_global(split, FLOPS2, 2.0) == -0.3  # 2 leave: cost 2.0
    assert ev.solve_global(split, FLOPS2, 1.9) == -0.8  # 3 leave: cost 1.5
    assert ev.solve_global(split, FLOPS2, 1.4) == -0.9  # all leave: cost 1.0
    assert ev.solve_global(split, FLOPS2, 1.0) == -0.9  # the highest tau of that cost
    assert ev.solve_global(split, FLOPS2, 2.9) == -0.1  # 1 leaves: 2.5
    assert ev.solve_global(split, FLOPS2, 3.0) == math.inf  # nobody leaves early


def test_global_threshold_is_monotone_and_the_best_tau_within_budget():
    val, yv = random_split(9, n=4, m=150)
    split, flops = ev.ScoredSplit.from_logits(val, yv), [1.0, 2.0, 4.0, 8.0]
    cost = lambda tau: split.evaluate(ev.global_thresholds(tau, 4), flops)["mmacs"]
    taus = [-math.inf] + sorted(set(split.scores[:-1].ravel().tolist())) + [math.inf]
    costs = [cost(t) for t in taus]
    assert costs == sorted(costs)  # held-out cost is non-decreasing in tau
    prev_tau, prev_cost = -math.inf, 0.0
    for b in [1.0, 1.5, 2.2, 3.0, 4.5, 6.0, 7.9, 8.0]:
        tau = ev.solve_global(split, flops, b)
        assert cost(tau) <= b + 1e-9
        assert cost(tau) == max(c for c in costs if c <= b + 1e-9)  # brute force
        assert tau >= prev_tau and cost(tau) >= prev_cost  # more budget: later exits
        prev_tau, prev_cost = tau, cost(tau)
