"""The validity diagnostic: random held-out halves, fit on one, measure on the other."""
import numpy as np
import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import risk, risk_validity


def split(n=120, exits=3, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=g)
    z = torch.randn(n, exits, classes, generator=g)
    z[torch.arange(n), :, y] += torch.linspace(0.5, 2.5, exits)
    return z.softmax(-1).double(), y


def test_half_splits_are_disjoint_halves_and_seeded():
    halves = list(risk_validity.half_splits(41, 3, seed=7))
    assert len(halves) == 3
    for fit, check in halves:
        assert len(fit) == 20 and len(check) == 21
        assert sorted(torch.cat([fit, check]).tolist()) == list(range(41))
    again = list(risk_validity.half_splits(41, 3, seed=7))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(halves, again))
    other = list(risk_validity.half_splits(41, 3, seed=8))
    assert not torch.equal(halves[0][0], other[0][0])
    assert not torch.equal(halves[0][0], halves[1][0])  # each repeat draws a new split


def test_rows_match_fitting_on_one_half_and_measuring_on_the_other():
    probs, labels = split()
    epsilons = (0.05, 0.2)
    rows = risk_validity.validity_diagnostic(probs, labels, losses=("accuracy_gap", "brier_gap"),
                                             epsilons=epsilons, repeats=5, seed=3)
    assert len(rows) == 2 * 3 * 2
    at = {(r["loss"], r["procedure"], r["epsilon"]): r for r in rows}
    for loss in ("accuracy_gap", "brier_gap"):
        for procedure in risk.PROCEDURES:
            for epsilon in epsilons:
                risks = []
                for fit_idx, check_idx in risk_validity.half_splits(len(labels), 5, seed=3):
                    fit = risk.risk_control(probs[fit_idx], labels[fit_idx], loss=loss,
                                            epsilon=epsilon, procedure=procedure)
                    risks.append(risk.measure_threshold(fit, probs[check_idx], labels[check_idx],
                                                        exit_mmacs=[1, 2, 3])["risk"])
                row = at[(loss, procedure, epsilon)]
                assert row["mean_risk"] == pytest.approx(sum(risks) / 5, abs=1e-12)
                assert row["exceeded_share"] == sum(r > epsilon for r in risks) / 5


def test_the_diagnostic_is_deterministic_given_the_seed():
    probs, labels = split()
    a = risk_validity.validity_diagnostic(probs, labels, epsilons=(0.1,), repeats=4, seed=1)
    b = risk_validity.validity_diagnostic(probs, labels, epsilons=(0.1,), repeats=4, seed=1)
    c = risk_validity.validity_diagnostic(probs, labels, epsilons=(0.1,), repeats=4, seed=2)
    assert a == b and a != c


def test_ucb_is_conservative_and_crc_is_not_trivially_safe_on_a_larger_split():
    probs, labels = split(n=2000, seed=4)
    rows = risk_validity.validity_diagnostic(probs, labels, losses=("consistency",),
                                             epsilons=(0.15,), repeats=20, seed=0)
    at = {r["procedure"]: r for r in rows}
    assert at["ucb"]["exceeded_share"] == 0.0  # Hoeffding is loose: far below δ
    assert 0.05 < at["crc"]["mean_risk"] <= 0.15 + 0.02  # CRC is tight in expectation


def test_halves_under_twenty_images_are_refused():
    probs, labels = split(n=39)
    with pytest.raises(ValueError, match="half of the held-out split has 19 images"):
        risk_validity.validity_diagnostic(probs, labels, repeats=2)


@pytest.mark.parametrize("repeats", [0, -1, 2.5, True])
def test_bad_repeats_are_refused(repeats):
    probs, labels = split()
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        risk_validity.validity_diagnostic(probs, labels, repeats=repeats)


def test_bad_options_are_refused_before_any_work():
    probs, labels = split()
    with pytest.raises(ValueError, match="epsilon must be in"):
        risk_validity.validity_diagnostic(probs, labels, epsilons=(0.1, 1.2))
    with pytest.raises(ValueError, match="procedure must be one of"):
        risk_validity.validity_diagnostic(probs, labels, procedures=("crc", "wsr"))


def test_package_export():
    assert ev.validity_diagnostic is risk_validity.validity_diagnostic


def test_fitted_indices_scan_every_repeat_like_last_passing():
    # rows: passes to the end, fails at λ = 1, non-monotone (passes again after a failure)
    risks = np.array([[0.0, 0.01, 0.02, 0.03], [0.5, 0.0, 0.0, 0.0], [0.0, 0.3, 0.0, 0.0]])
    index = risk_validity.fitted_indices(risks, "crc", 0.1, 0.1, 1.0, 100)
    expected = [risk.last_passing(risk.passes("crc", row, 100, epsilon=0.1, delta=0.1,
                                              bound=1.0)) for row in risks]
    assert index.tolist() == expected == [3, 0, 0]
