"""Split-conformal prediction sets per exit and the nested variant."""
import math

import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import conformal


def held_out(scores_by_exit):
    """Two-class probs [n, L, 2] whose true-class score 1 - p[., l, 0] is the given one."""
    s = torch.tensor(scores_by_exit, dtype=torch.float64).T  # [n, L]
    return torch.stack([1 - s, s], dim=-1), torch.zeros(s.shape[0], dtype=torch.long)


SCORES = [i / 32 for i in range(20)]  # exact binary fractions, n = 20


def test_scores_hand_computed():
    probs = torch.tensor([[[0.2, 0.5, 0.3]], [[0.6, 0.25, 0.15]]], dtype=torch.float64)
    assert conformal.scores(probs, torch.tensor([1, 0])).tolist() == [[0.5], [0.4]]


def test_quantile_is_the_ceil_n_plus_one_rank():
    probs, labels = held_out([SCORES, SCORES[::-1]])
    # α = 0.1: k = ceil(21 * 0.9) = ceil(18.9) = 19 -> 19th smallest = 18/32, at both exits
    assert conformal.quantiles(probs, labels, 0.1).tolist() == [18 / 32, 18 / 32]
    # α = 0.05: k = ceil(21 * 0.95) = 20 -> the largest, 19/32
    assert conformal.quantiles(probs, labels, 0.05).tolist() == [19 / 32, 19 / 32]
    # α = 0.04: k = ceil(20.16) = 21 > n: every class
    assert conformal.quantiles(probs, labels, 0.04).tolist() == [1.0, 1.0]


def test_quantile_rank_is_not_thrown_off_by_float_noise():
    # n = 149, α = 0.18: (n + 1)(1 - α) = 123.00000000000001 in floats, the rank is 123
    assert 150 * (1 - 0.18) > 123
    s = [i / 256 for i in range(149)]
    assert conformal.quantiles(*held_out([s]), 0.18).tolist() == [122 / 256]


def test_prediction_sets_and_nested_sets_hand_computed():
    probs = torch.tensor([[[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]],
                          [[0.5, 0.375, 0.125], [0.5, 0.375, 0.125]]], dtype=torch.float64)
    qhat = torch.tensor([0.625, 0.5], dtype=torch.float64)  # keep p >= .375 and p >= .5
    sets = conformal.prediction_sets(probs, qhat)
    assert sets.tolist() == [[[True, False, False], [False, True, False]],
                             [[True, True, False], [True, False, False]]]
    # nested: exit 2 intersected with exit 1; image 0's becomes empty
    assert conformal.nested(sets).tolist() == [[[True, False, False], [False, False, False]],
                                               [[True, True, False], [True, False, False]]]


def test_set_quality_hand_computed():
    sets = torch.tensor([[[True, False, False], [False, False, False]],
                         [[True, True, False], [True, False, False]]])
    got = conformal.set_quality(sets, torch.tensor([0, 1]))
    assert got == {"coverage": [1.0, 0.0], "mean_size": [1.5, 0.5], "empty_share": [0.0, 0.5]}


def synthetic(n, seed, exits=3, classes=10):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=g)
    z = torch.randn(n, exits, classes, generator=g) * 1.5
    z[torch.arange(n), :, y] += torch.linspace(0.5, 3.0, exits)
    return z.softmax(-1).double(), y


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_coverage_holds_on_exchangeable_data(alpha):
    """E[coverage] is in [1 - α, 1 - α + 1/(n + 1)]: averaged over 40 seeded calibration
    draws, each measured on 5000 fresh images, within 3 standard errors."""
    n, draws = 200, 40
    coverages = []
    for seed in range(draws):
        cal = synthetic(n, seed)
        test_probs, test_labels = synthetic(5000, 1000 + seed)
        qhat = conformal.quantiles(*cal, alpha)
        sets = conformal.prediction_sets(test_probs, qhat)
        coverages.append(conformal.set_quality(sets, test_labels)["coverage"])
    cov = torch.tensor(coverages, dtype=torch.float64)  # [draws, L]
    mean, se = cov.mean(dim=0), cov.std(dim=0) / math.sqrt(draws)
    assert (mean >= 1 - alpha - 3 * se).all(), (mean, se)
    assert (mean <= 1 - alpha + 1 / (n + 1) + 3 * se).all(), (mean, se)


def test_nested_sets_shrink_along_the_exits():
    probs, labels = synthetic(500, 0)
    qhat = conformal.quantiles(*synthetic(300, 1), 0.1)
    nested = conformal.nested(conformal.prediction_sets(probs, qhat))
    sizes = nested.sum(dim=-1)
    assert (sizes[:, 1:] <= sizes[:, :-1]).all()
    assert (nested[:, 1:] <= nested[:, :-1]).all()  # subsets


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_bad_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha must be in \\(0, 1\\)"):
        conformal.quantiles(*held_out([SCORES]), alpha)


def test_a_held_out_split_under_twenty_images_is_refused():
    with pytest.raises(ValueError, match="has 19 images; calibrating needs at least 20"):
        conformal.quantiles(*held_out([SCORES[:19]]), 0.1)


def test_package_exports():
    assert ev.conformal is conformal and conformal.DEFAULT_ALPHAS == (0.05, 0.1)
