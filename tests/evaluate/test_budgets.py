import math

import numpy as np
import pytest
import torch

from bench.evaluate import budgets as ev


def probs_to_logits(rows):
    """Logits whose softmax is exactly the given probability rows: [N, M, C]."""
    return torch.tensor(rows, dtype=torch.float64).log().float()


# 2 exits, 4 samples, 3 classes; targets [0, 1, 2, 0]
TINY = torch.tensor([
    [[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 2.0, 0.0], [0.0, 1.0, 2.0]],  # argmax 0,1,1,2 -> 2/4
    [[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 1.0, 0.0]],  # argmax 0,1,2,0 -> 4/4
])
TINY_Y = torch.tensor([0, 1, 2, 0])

# 3 exits, 4 held-out samples; max softmax per exit (rows are probabilities)
HAND = probs_to_logits([
    [[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.1, 0.4, 0.5]],     # conf .9 .5 .6 .5
    [[0.95, 0.03, 0.02], [0.1, 0.7, 0.2], [0.5, 0.25, 0.25], [0.8, 0.1, 0.1]],  # conf .95 .7 .5 .8
    [[0.4, 0.3, 0.3], [0.4, 0.3, 0.3], [0.3, 0.3, 0.4], [0.4, 0.3, 0.3]],
])
HAND_Y = torch.tensor([0, 1, 2, 1])
FLOPS3 = [10.0, 20.0, 40.0]


def test_anytime_and_topk_hand_computed():
    assert ev.anytime_accuracy(TINY, TINY_Y) == [50.0, 100.0]
    assert ev.anytime_accuracy(list(TINY.half()), TINY_Y) == [50.0, 100.0]  # list of [M, C], fp16
    # top-2 of exit 1: {0,1} {1,2} {1,0} {2,1} vs targets 0 1 2 0 -> samples 2, 3 miss
    assert ev.topk_accuracy(TINY, TINY_Y, 2) == [50.0, 100.0]
    # 6 classes, target ranked 6th for sample 0, 5th for sample 1, 1st for samples 2, 3
    six = torch.tensor([[[0.0, 5, 4, 3, 2, 1], [1.0, 5, 4, 3, 2, 0],
                         [0.0, 0, 9, 0, 0, 0], [0.0, 0, 0, 9, 0, 0]]])
    y = torch.tensor([0, 0, 2, 3])
    assert ev.topk_accuracy(six, y, 5) == [75.0]
    assert ev.topk_accuracy(six, y, 1) == ev.topk_accuracy(six, y, 4) == [50.0]
    assert ev.topk_accuracy(TINY, TINY_Y, 5) == [100.0, 100.0]  # k > C counts as C


def test_prior_and_counts():
    p = ev.exit_prior(0.5, 3)  # q^1, q^2, q^3 = .5, .25, .125 -> /0.875
    assert p.tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert ev.exit_counts(ev.exit_prior(1.0, 3), 4).tolist() == [1, 2, 1]  # round(4/3, 8/3, 4)
    assert ev.exit_counts(ev.exit_prior(1e-9, 3), 7).tolist() == [7, 0, 0]
    assert ev.exit_counts(ev.exit_prior(1e9, 3), 7).tolist() == [0, 0, 7]
    assert ev.exit_prior(1e300, 40).sum().item() == pytest.approx(1.0)  # no overflow


def test_thresholds_hand_made_three_exits():
    # HAND exit-1 confidences: .9 .5 .6 .5 ; exit-2: .95 .7 .5 .8
    # q = 1 -> counts [1, 2, 1]. Exit 1: most confident is sample 0 -> T1 = .9.
    # Exit 2 among samples 1, 2, 3 (sample 0's .95 does not count): .8, .7, .5 -> T2 = .7.
    split = ev._Split(HAND, HAND_Y)
    t = split.thresholds(1.0)
    assert t[:2] == pytest.approx([0.9, 0.7]) and t[2] == -math.inf
    assert ev.assign_exits(HAND, t).tolist() == [0, 1, 2, 1]
    res = split.evaluate(t, FLOPS3)
    assert res["exit_shares"] == [0.25, 0.5, 0.25]
    # exit 1 predicts 0 for sample 0 (ok); exit 2 predicts 1, 0 for samples 1, 3 (ok, miss);
    # exit 3 predicts 2 for sample 2 (ok)
    assert res["accuracy"] == 75.0
    assert res["mmacs"] == pytest.approx(0.25 * 10 + 0.5 * 20 + 0.25 * 40)  # 22.5


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


def test_heldout_shares_follow_prior():
    g = torch.Generator().manual_seed(1)
    val = torch.randn(3, 700, 5, generator=g)
    split = ev._Split(val, torch.zeros(700, dtype=torch.long))
    for q in (0.3, 1.0, 1.7):
        shares = split.evaluate(split.thresholds(q), FLOPS3)["exit_shares"]
        want = ev.exit_counts(ev.exit_prior(q, 3), 700) / 700
        assert shares == pytest.approx(want.tolist())


def random_split(seed, n=4, m=250, c=10):
    g = torch.Generator().manual_seed(seed)
    # later exits sharper, so accuracy and confidence vary across exits
    logits = torch.randn(n, m, c, generator=g) * torch.linspace(1, 3, n)[:, None, None]
    return logits, torch.randint(c, (m,), generator=g)


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
        split = ev._Split(val, yv)
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
    with pytest.raises(ValueError, match="preds must be"):
        ev.anytime_accuracy(val[0], yv)


@pytest.mark.parametrize("tied", [False, True])
def test_budget_solver_beats_a_dense_q_scan(tied):
    val, yv = random_split(8, n=3, m=60, c=4)
    if tied:  # few distinct logits: many held-out confidences tie, realized != planned counts
        val = val.round()
    split, flops = ev._Split(val, yv), [1.0, 2.0, 5.0]
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


def test_scored_split_fits_any_score_matrix_on_a_two_exit_toy():
    split = ev.ScoredSplit(TOY_SCORES, TOY_PRED, TOY_Y)
    # q = 1: counts [2, 2]; the 2nd highest exit-1 score is -0.3 -> samples 0 and 2 leave
    assert split.thresholds(1.0) == [-0.3, -math.inf]
    assert split.exits([-0.3, -math.inf]).tolist() == [0, 1, 0, 1]
    # exit 1 predicts 0, 1 for samples 0, 2 (right); exit 2 predicts 1, 1 for 1, 3 (wrong, right)
    assert split.correct([-0.3, -math.inf]).tolist() == [True, False, True, True]
    res = split.evaluate([-0.3, -math.inf], FLOPS2)
    assert res == {"accuracy": 75.0, "mmacs": 2.0, "exit_shares": [0.5, 0.5]}
    # q small: counts [4, 0] -> -inf (all leave at exit 1); q large: [0, 4] -> +inf
    assert split.thresholds(1e-6) == [-math.inf, -math.inf]
    assert split.thresholds(1e6) == [math.inf, -math.inf]
    # q = 0.5: prior [2/3, 1/3], counts [3, 1]: the 3rd highest is -0.8
    assert split.thresholds(0.5) == [-0.8, -math.inf]


def test_scored_split_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"both be \[N_exits, M\], got \(2, 4\) and \(2, 3\)"):
        ev.ScoredSplit(TOY_SCORES, [[0, 1, 1], [0, 1, 1]], TOY_Y)
    with pytest.raises(ValueError, match=r"targets must be \[M\] with M = 4, got shape \(3,\)"):
        ev.ScoredSplit(TOY_SCORES, TOY_PRED, [0, 0, 1])


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
    split, flops = ev._Split(val, yv), [1.0, 2.0, 4.0, 8.0]
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


def test_fit_counts_the_exits_its_thresholds_give_even_with_ties():
    val, yv = random_split(10, n=4, m=300, c=5)
    split, flops = ev._Split(val.round(), yv), [1.0, 2.0, 4.0, 8.0]  # many tied scores
    tied_somewhere = False
    for q in torch.logspace(-3, 3, 60, dtype=torch.float64).tolist():
        thresholds, leaving = split._fit(q)
        res = split.evaluate(thresholds, flops)
        assert (leaving / split.m).tolist() == res["exit_shares"]  # what solve_q's search uses
        assert float((leaving / split.m) @ np.asarray(flops)) == res["mmacs"]
        planned = ev.exit_counts(ev.exit_prior(q, 4), 300)
        tied_somewhere |= leaving.tolist() != planned.tolist()
    assert tied_somewhere  # ties made some realized counts differ from the planned ones
