"""Anytime quality: monotonicity violations, correctness decreases, AUROC and ECE per exit,
against hand-computed values on small tensors."""
import itertools

import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import anytime_quality as aq


def two_class(q):
    """probs [N, L, 2] with p[n, l, 0] = q[n][l] and labels 0: q is the true class's."""
    q = torch.tensor(q, dtype=torch.float64)
    return torch.stack([q, 1 - q], dim=-1), torch.zeros(len(q), dtype=torch.long)


# true-class probabilities, exact binary fractions
Q = [[0.5, 0.75, 1.0],      # rises: never violates
     [0.75, 0.5, 0.625],    # largest drop 0.25
     [0.5, 0.875, 0.25],    # largest drop 0.625
     [1.0, 0.5, 0.5],       # largest drop 0.5
     [0.75, 0.625, 0.5]]    # drops 0.125 twice, 0.25 from exit 1 to exit 3


def test_largest_drop_hand_computed():
    probs, labels = two_class(Q)
    assert aq.largest_drop(probs[:, :, 0]).tolist() == [0.0, 0.25, 0.625, 0.5, 0.25]
    assert aq.largest_drop(probs[:, :1, 0]).tolist() == [0.0] * 5  # one exit: no pair


def test_monotonicity_hand_computed_at_the_seven_taus():
    # violates at τ iff the largest drop > τ (strictly): 0.25 does not violate at τ = 0.25
    assert aq.monotonicity(*two_class(Q)) == {0.01: 0.8, 0.05: 0.8, 0.1: 0.8, 0.2: 0.8,
                                              0.25: 0.4, 0.33: 0.4, 0.5: 0.2}
    assert aq.DEFAULT_TAUS == (0.01, 0.05, 0.1, 0.2, 0.25, 0.33, 0.5)


def adjacent_only(probs, labels, taus):
    """A deliberately wrong variant: compares consecutive exits only."""
    q = probs[torch.arange(len(labels)), :, labels]
    drop = (q[:, :-1] - q[:, 1:]).max(dim=1).values
    return {t: (drop > t).double().mean().item() for t in taus}


def test_comparing_consecutive_exits_only_is_caught():
    assert adjacent_only(*two_class(Q), aq.DEFAULT_TAUS)[0.2] == 0.6  # misses the last image
    assert aq.monotonicity(*two_class(Q))[0.2] == 0.8


def test_monotonicity_matches_all_pairs_on_random_probs():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(200, 5, 4, generator=g, dtype=torch.float64)
    probs /= probs.sum(-1, keepdim=True)
    labels = torch.randint(4, (200,), generator=g)
    q = probs[torch.arange(200), :, labels]
    for tau in (0.0, 0.05, 0.2):
        violating = [any(q[n, j] - q[n, i] < -tau for i, j in itertools.combinations(range(5), 2))
                     for n in range(200)]
        assert aq.monotonicity(probs, labels, [tau])[tau] == sum(violating) / 200


def test_correctness_decreases_hand_computed():
    # correct (q > 1/2) per exit: image 0 R R R, 1 R W R (decrease), 2 W R W (decrease),
    # 3 R W W (decrease), 4 W W R
    q = [[0.75, 0.75, 0.75], [0.75, 0.25, 0.75], [0.25, 0.75, 0.25], [0.75, 0.25, 0.25],
         [0.25, 0.25, 0.75]]
    assert aq.correctness_decreases(*two_class(q)) == 0.6


def test_auroc_hand_computed_with_ties_counting_one_half():
    # pairs (positive, negative): (.9,.8) 1, (.9,.3) 1, (.8,.8) 1/2, (.8,.3) 1 -> 3.5 / 4
    scores = torch.tensor([0.9, 0.8, 0.8, 0.3])
    assert aq.auroc(scores, [True, False, True, False]) == 0.875
    assert aq.auroc(scores, [False, True, False, True]) == 0.125
    assert aq.auroc(scores, [True] * 4) is None and aq.auroc(scores, [False] * 4) is None


def test_auroc_matches_counting_pairs():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 6, (60,), generator=g).double() / 5  # many ties
    positive = torch.rand(60, generator=g) < 0.4
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0)
             for p in scores[positive] for n in scores[~positive]]
    assert aq.auroc(scores, positive) == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)


def test_failure_auroc_per_exit_uses_the_rules_confidence():
    # exit 1: correct images 0, 1 (q = .75, .625), wrong image 2 (q = .25, max prob .75)
    probs, labels = two_class([[0.75, 0.75], [0.625, 0.25], [0.25, 0.875]])
    # max prob at exit 1: .75, .625 (correct) vs .75 (wrong): pairs 1/2 + 0 = 1/4
    # at exit 2: correct 0 (.75), 2 (.875) vs wrong 1 (.75): pairs 1/2 + 1 = 3/4
    assert aq.failure_auroc(probs, labels) == [0.25, 0.75]
    conf = torch.tensor([[0.9, 0.1], [0.8, 0.9], [0.1, 0.3]], dtype=torch.float64)
    assert aq.failure_auroc(probs, labels, conf) == [1.0, 0.0]


def test_exit_ece_hand_computed():
    # exit 1: confidences .9 (right), .9 (wrong), .6 (right), .6 (right):
    # .5 |.5 - .9| + .5 |1 - .6| = 0.4 -> 40 percent; exit 2: .75 always right -> 25 percent
    probs = torch.tensor([[[0.9, 0.1], [0.75, 0.25]], [[0.9, 0.1], [0.25, 0.75]],
                          [[0.4, 0.6], [0.25, 0.75]], [[0.4, 0.6], [0.25, 0.75]]],
                         dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 1])
    assert aq.exit_ece(probs, labels) == pytest.approx([40.0, 25.0], abs=1e-4)


def test_probabilities_with_zeros_are_fine_for_ece():
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]] * 10, dtype=torch.float64)
    labels = torch.tensor([0, 0] * 10)
    assert aq.exit_ece(probs, labels) == pytest.approx([50.0], abs=1e-4)


def test_bad_taus_are_refused():
    with pytest.raises(ValueError, match="taus must be tolerances >= 0, got -0.1"):
        aq.monotonicity(*two_class(Q), taus=[0.1, -0.1])


def test_package_exports():
    assert ev.monotonicity is aq.monotonicity and ev.DEFAULT_TAUS == aq.DEFAULT_TAUS
    assert ev.correctness_decreases is aq.correctness_decreases
