"""bench.evaluate.thresholds: the exit rule, MSDNet's prior and threshold fit, finite
stand-ins for infinite thresholds."""
import math

import numpy as np
import pytest
import torch

from bench import evaluate as ev


def probs_to_logits(rows):
    """Logits whose softmax is exactly the given probability rows: [N, M, C]."""
    return torch.tensor(rows, dtype=torch.float64).log().float()


# 3 exits, 4 held-out samples; max softmax per exit (rows are probabilities)
HAND = probs_to_logits([
    [[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.1, 0.4, 0.5]],     # conf .9 .5 .6 .5
    [[0.95, 0.03, 0.02], [0.1, 0.7, 0.2], [0.5, 0.25, 0.25], [0.8, 0.1, 0.1]],  # conf .95 .7 .5 .8
    [[0.4, 0.3, 0.3], [0.4, 0.3, 0.3], [0.3, 0.3, 0.4], [0.4, 0.3, 0.3]],
])
HAND_Y = torch.tensor([0, 1, 2, 1])
FLOPS3 = [10.0, 20.0, 40.0]


def random_split(seed, n=4, m=250, c=10):
    g = torch.Generator().manual_seed(seed)
    # later exits sharper, so accuracy and confidence vary across exits
    logits = torch.randn(n, m, c, generator=g) * torch.linspace(1, 3, n)[:, None, None]
    return logits, torch.randint(c, (m,), generator=g)


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
    split = ev.ScoredSplit.from_logits(HAND, HAND_Y)
    t = split.thresholds(1.0)
    assert t[:2] == pytest.approx([0.9, 0.7]) and t[2] == -math.inf
    assert ev.assign_exits(HAND, t).tolist() == [0, 1, 2, 1]
    res = split.evaluate(t, FLOPS3)
    assert res["exit_shares"] == [0.25, 0.5, 0.25]
    # exit 1 predicts 0 for sample 0 (ok); exit 2 predicts 1, 0 for samples 1, 3 (ok, miss);
    # exit 3 predicts 2 for sample 2 (ok)
    assert res["accuracy"] == 75.0
    assert res["mmacs"] == pytest.approx(0.25 * 10 + 0.5 * 20 + 0.25 * 40)  # 22.5


def test_heldout_shares_follow_prior():
    g = torch.Generator().manual_seed(1)
    val = torch.randn(3, 700, 5, generator=g)
    split = ev.ScoredSplit.from_logits(val, torch.zeros(700, dtype=torch.long))
    for q in (0.3, 1.0, 1.7):
        shares = split.evaluate(split.thresholds(q), FLOPS3)["exit_shares"]
        want = ev.exit_counts(ev.exit_prior(q, 3), 700) / 700
        assert shares == pytest.approx(want.tolist())


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


def test_fit_counts_the_exits_its_thresholds_give_even_with_ties():
    val, yv = random_split(10, n=4, m=300, c=5)
    split, flops = ev.ScoredSplit.from_logits(val.round(), yv), [1.0, 2.0, 4.0, 8.0]  # many tied scores
    tied_somewhere = False
    for q in torch.logspace(-3, 3, 60, dtype=torch.float64).tolist():
        thresholds, leaving = split.fit(q)
        res = split.evaluate(thresholds, flops)
        assert (leaving / split.m).tolist() == res["exit_shares"]  # what solve_q's search uses
        assert float((leaving / split.m) @ np.asarray(flops)) == res["mmacs"]
        planned = ev.exit_counts(ev.exit_prior(q, 4), 300)
        tied_somewhere |= leaving.tolist() != planned.tolist()
    assert tied_somewhere  # ties made some realized counts differ from the planned ones


def test_the_exit_rule_is_the_first_threshold_reached():
    scores = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5], [0.0, 0.0, 0.0]])
    assert ev.exits_from_scores(scores, [0.5, 0.8, 2.0]).tolist() == [0, 1, 0]  # >=, ties leave
    assert ev.exits_from_scores(scores, [1.0, 0.9, 2.0]).tolist() == [2, 2, 2]  # the last takes all
    for k in range(3):
        assert ev.exits_from_scores(scores, ev.forced_exit(k, 3)).tolist() == [k] * 3


def test_finite_stand_ins():
    assert ev.finite_thresholds([math.inf, 0.3, -math.inf], (0.0, 1.0)) == [2.0, 0.3, -1.0]
    assert ev.finite_thresholds([math.inf, -math.inf], (-math.log(10), 0.0)) == \
        [1.0, -math.log(10) - 1]
    assert ev.finite_thresholds([math.inf, -math.inf]) == [2.0, -1.0]  # max softmax's [0, 1]
    # the stand-ins send every sample where the infinite thresholds do
    scores = ev.confidences(torch.randn(3, 50, 4) * 5)[0].numpy()
    for t in ([math.inf, -math.inf, -math.inf], [math.inf, math.inf, -math.inf],
              [-math.inf, 0.5, -math.inf]):
        assert ev.exits_from_scores(scores, ev.finite_thresholds(t)).tolist() == \
            ev.exits_from_scores(scores, t).tolist()
