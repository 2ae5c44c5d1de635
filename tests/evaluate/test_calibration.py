import pytest
import torch

from bench.evaluate import calibration as cal
from bench import evaluate as ev


def calibrated(seed, n=2, m=6000, c=10):
    """Logits z with labels drawn from softmax(z): perfectly calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, m, c, generator=g) * 2.0
    y = torch.multinomial(z[-1].softmax(-1), 1, generator=g).squeeze(1)  # labels follow exit N
    z[:-1] = z[-1]  # every exit shares the calibrated logits (scaled below)
    return z, y


def test_fitted_calibration_temperature_recovers_known_multiple():
    z, y = calibrated(0)
    multiples = torch.tensor([3.0, 0.5])  # exit 1 over-confident, exit 2 under-confident
    temps = cal.fit_temperatures(z * multiples[:, None, None], y)
    assert temps == pytest.approx(multiples.tolist(), rel=0.1)
    assert cal.fit_temperatures(z, y) == pytest.approx([1.0, 1.0], rel=0.1)


def test_ece_near_zero_when_calibrated_and_larger_when_over_confident():
    z, y = calibrated(1)
    ece = cal.expected_calibration_error(z, y)
    assert max(ece) < 2.5  # percent; sampling noise only
    over = cal.expected_calibration_error(z * 3, y)
    assert min(over) > 10.0 and min(over) > 4 * max(ece)


def test_ece_hand_computed():
    # one exit, 2 classes: confidences .9 (correct), .9 (wrong), .6 (correct), .6 (correct)
    # bins of width 1/15: .9 and .6 fall in different bins
    # |B|/M |acc - conf|: .5 * |.5 - .9| + .5 * |1 - .6| = .2 + .2 = .4 -> 40 percent
    p = torch.tensor([[[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]]]).log()
    y = torch.tensor([0, 1, 1, 1])
    assert cal.expected_calibration_error(p, y) == pytest.approx([40.0], abs=1e-4)


def test_calibration_temperature_keeps_anytime_top1():
    z, y = calibrated(2, n=3, m=500)
    scaled = z * torch.tensor([4.0, 1.0, 0.3])[:, None, None]
    temps = cal.fit_temperatures(scaled, y)
    after = cal.apply_temperatures(scaled, temps)
    assert after.shape == scaled.shape
    assert ev.anytime_accuracy(after, y) == ev.anytime_accuracy(scaled, y)
    assert ev.topk_accuracy(after, y, 5) == ev.topk_accuracy(scaled, y, 5)


def test_calibration_report_before_and_after():
    z, y = calibrated(3, n=3, m=800)
    # exit 1 over-confident, exit 2 calibrated, exit 3 under-confident
    scaled = z * torch.tensor([3.0, 1.0, 0.4])[:, None, None]
    val, yv, test, yt = scaled[:, :400], y[:400], scaled[:, 400:], y[400:]
    flops, budgets = [1.0, 2.0, 3.0], [1.5, 2.5]
    rep = cal.calibration_report(val, yv, test, yt, flops, budgets)
    assert len(rep["calibration_temperatures"]) == 3 and rep["ece_unit"] == "percent"
    assert rep["ece_before"] == cal.expected_calibration_error(test, yt)
    assert sum(rep["ece_after"]) < sum(rep["ece_before"])
    assert rep["budgeted_before"] == ev.accuracy_at_budgets(val, yv, test, yt, flops, budgets)
    for row in rep["budgeted_after"]:
        assert row["heldout_flops"] <= row["budget"] + 1e-9
    assert [r["budget"] for r in rep["budgeted_after"]] == budgets
