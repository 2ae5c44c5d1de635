import math

import numpy as np
import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import criteria


def logits_of(rows):
    """float64 logits whose softmax is exactly the given probability rows (0 -> -inf)."""
    return torch.tensor(rows, dtype=torch.float64).log()


def test_registry_names_create_and_errors(monkeypatch):
    assert criteria.names() == ["entropy", "margin", "max_softmax", "patience"]
    assert criteria.create("entropy").score is criteria.entropy
    with pytest.raises(KeyError, match="unknown exit criterion 'nope'.*entropy, margin"):
        criteria.create("nope")
    with pytest.raises(ValueError, match="'margin' is already registered"):
        criteria.register("margin", bounds=lambda n, c: (0.0, 1.0))(lambda z: z)
    monkeypatch.setattr(criteria.CRITERIA, "_entries", dict(criteria.CRITERIA._entries))  # a plugin's criterion
    criteria.register("second_prob", bounds=lambda n, c: (0.0, 0.5))(
        lambda z: torch.softmax(z.double(), -1).topk(2, -1).values[..., 1])
    assert "second_prob" in criteria.names()
    z = logits_of([[[0.5, 0.3, 0.2]]])
    assert criteria.create("second_prob").score(z).item() == pytest.approx(0.3)


def test_entropy_hand_computed():
    # three rows of 3 classes: 0.5 ln .5 + 2 * .25 ln .25 = -1.5 ln 2; uniform: -ln 3;
    # one-hot with -inf logits: 0 (0 log 0 = 0, no NaN)
    z = logits_of([[[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]]])
    s = criteria.entropy(z)
    assert s.dtype == torch.float64 and s.shape == (1, 3)
    assert s[0].tolist() == pytest.approx([-1.5 * math.log(2), -math.log(3), 0.0], abs=1e-15)
    assert not s.isnan().any()


def test_margin_hand_computed():
    z = logits_of([[[0.5, 0.25, 0.25], [0.7, 0.1, 0.2], [1.0, 0.0, 0.0]],
                   [[0.2, 0.2, 0.6], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6]]])
    want = torch.tensor([[0.25, 0.5, 1.0], [0.4, 0.0, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(criteria.margin(z), want, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        criteria.margin(torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match=r"\[N_exits, M, C\], got shape \(3, 2\)"):
        criteria.margin(torch.zeros(3, 2))


def test_max_softmax_is_the_legacy_confidence_bit_for_bit():
    z = torch.randn(4, 300, 10) * 6
    assert torch.equal(criteria.max_softmax(z), ev.confidences(z)[0])
    assert torch.equal(criteria.max_softmax(z.half()), ev.confidences(z.half())[0])
    # float64 input stays float64 (a combiner's output), -inf entries allowed
    assert criteria.max_softmax(logits_of([[[0.8, 0.2, 0.0]]])).item() == pytest.approx(0.8)


# argmax per exit (rows: exits 1..4; columns: samples 0..2)
#   sample 0: 0 0 0 0 -> counters 0 1 2 3
#   sample 1: 0 1 1 0 -> counters 0 0 1 0
#   sample 2: 2 2 1 1 -> counters 0 1 0 1
PATIENCE = logits_of([
    [[0.6, 0.2, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]],
    [[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.2, 0.3, 0.5]],
    [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.4, 0.4 - 1e-9]],
    [[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.1, 0.9, 0.0]],
])


def test_patience_counters_and_score_hand_computed():
    c = criteria.patience_counters(PATIENCE)
    assert c.T.tolist() == [[0, 1, 2, 3], [0, 0, 1, 0], [0, 1, 0, 1]]
    ms = [[0.6, 0.5, 0.7], [0.7, 0.6, 0.5], [0.8, 0.8, 0.4], [0.9, 0.4, 0.9]]
    want = c.double() + torch.tensor(ms, dtype=torch.float64)
    torch.testing.assert_close(criteria.patience(PATIENCE), want, rtol=0, atol=1e-8)


def test_pabee_thresholds_reproduce_the_integer_patience_rule():
    s = criteria.patience(PATIENCE).numpy()
    for t, want in ((1, [1, 2, 1]), (2, [2, 3, 3]), (3, [3, 3, 3])):
        th = [criteria.pabee_threshold(t)] * 3 + [-math.inf]
        assert ev.exits_from_scores(s, th).tolist() == want  # first exit with c_n >= t, else the last
    # max softmax exactly 1.0 with counter t - 1 = 0 gives score exactly t = 1: must not exit
    sure = torch.tensor([[[0.0, -1e4]], [[5.0, 0.0]]], dtype=torch.float64)
    assert criteria.patience(sure)[0].item() == 1.0
    assert ev.exits_from_scores(criteria.patience(sure).numpy(),
                      [criteria.pabee_threshold(1), -math.inf]).tolist() == [1]
    with pytest.raises(ValueError, match="integer >= 1, got 0"):
        criteria.pabee_threshold(0)


@pytest.mark.parametrize("name", criteria.names())
def test_scores_lie_within_bounds_and_higher_means_surer(name):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 400, 7, generator=g) * torch.linspace(0.1, 8, 5)[:, None, None]
    crit = criteria.create(name)
    s = crit.score(z)
    low, high = crit.bounds(5, 7)
    assert s.shape == (5, 400) and s.dtype == torch.float64
    assert bool((s >= low - 1e-12).all() and (s <= high + 1e-12).all())
    # a uniform prediction is the least confident (patience: counter 0 at exit 1)
    flat = torch.cat([torch.zeros(5, 1, 7), z], dim=1)
    assert np.argmin(crit.score(flat)[0].numpy()) == 0
