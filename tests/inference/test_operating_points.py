"""Thresholds for a budget in MMACs or in measured ms per image, hand-computed."""
import pytest

from bench.inference.operating_points import ExportError, OperatingPoints

CURVE = [  # held-out exit shares of three q-curve points of a 3-exit model
    {"q": 0.5, "thresholds": [0.1, 0.1, -1.0], "heldout_mmacs": 1.2,
     "heldout_exit_shares": [0.8, 0.2, 0.0]},
    {"q": 1.0, "thresholds": [0.5, 0.5, -1.0], "heldout_mmacs": 2.0,
     "heldout_exit_shares": [0.4, 0.2, 0.4]},
    {"q": 2.0, "thresholds": [0.9, 0.9, -1.0], "heldout_mmacs": 2.6,
     "heldout_exit_shares": [0.1, 0.2, 0.7]},
]
LATENCY = [
    {"runtime": "onnxruntime", "device": "cpu", "batch_size": 1, "threads": 1,
     "date": "2026-01-01", "exit_ms": [1.0, 2.0, 4.0]},
    {"runtime": "onnxruntime", "device": "cpu", "batch_size": 64, "threads": 1,
     "date": "2026-01-01", "exit_ms": [0.1, 0.3, 0.5]},
    {"runtime": "pytorch", "device": "cpu", "batch_size": 1, "threads": 1,
     "date": "2026-01-01", "exit_ms": [2.0, 4.0, 8.0]},
]


def points(runtime="onnxruntime", **extra):
    payload = {"exit_mmacs": [1.0, 2.0, 3.0], "budgets": [
        {"budget_mmacs": 1.5, "thresholds": [0.3, 0.3, -1.0]}], "curve": CURVE,
        "latency": LATENCY, **extra}
    return OperatingPoints(payload, runtime)


def test_ms_budgets_take_the_costliest_curve_point_within_them():
    p = points()
    # held-out ms at batch 1: 0.8*1+0.2*2 = 1.2; 0.4+0.4+1.6 = 2.4; 0.1+0.4+2.8 = 3.3
    assert p.thresholds(budget_ms=2.5, batch_size=1) == [0.5, 0.5, -1.0]
    assert p.thresholds(budget_ms=3.3, batch_size=1) == [0.9, 0.9, -1.0]
    # at batch 64: 0.08+0.06 = 0.14; 0.04+0.06+0.2 = 0.30; 0.01+0.06+0.35 = 0.42
    assert p.thresholds(budget_ms=0.29, batch_size=64) == [0.1, 0.1, -1.0]
    # the pytorch model reads its own runtime's latency: 1.6+0.8 = 2.4 ... 0.2+0.8+5.6 = 6.6
    assert points("pytorch").thresholds(budget_ms=5.0) == [0.5, 0.5, -1.0]


def test_mmacs_budgets_are_unchanged():
    p = points()
    assert p.thresholds(1.5) == [0.3, 0.3, -1.0]  # the fixed budget
    assert p.thresholds(budget_mmacs=2.1) == [0.5, 0.5, -1.0]
    assert p.thresholds() == [2.0, 2.0, 2.0]  # every image to the last exit
    with pytest.raises(ExportError, match="below the cheapest"):
        p.thresholds(1.0)
    with pytest.raises(ExportError, match="not both"):
        p.thresholds(2.0, 2.0)


def test_a_fixed_ms_budget_uses_its_own_thresholds_where_its_latency_is_this_one():
    fixed = [{"budget_ms": 2.5, "thresholds": [0.42, 0.42, -1.0], "latency": {
        "runtime": "onnxruntime", "device": "cpu", "batch_size": 1, "threads": 1}}]
    p = points(budgets_ms=fixed)
    assert p.thresholds(budget_ms=2.5, batch_size=1) == [0.42, 0.42, -1.0]
    assert points("pytorch", budgets_ms=fixed).thresholds(budget_ms=2.5) != [0.42, 0.42, -1.0]


def test_ms_budgets_outside_the_exits_latency_name_both_ends():
    p = points()
    with pytest.raises(ExportError, match=r"budget_ms=0.5 is below exit 1's measured latency: "
                       r"exit 1 takes 1 ms per image and exit 3 \(the last\) 4 ms "
                       r"\(onnxruntime, cpu, batch 1, 1 thread"):
        p.thresholds(budget_ms=0.5, batch_size=1)
    with pytest.raises(ExportError, match="budget_ms=5.0 is above the last exit's.*exit 1 "
                       "takes 1 ms.*the last\\) 4 ms"):
        p.thresholds(budget_ms=5.0, batch_size=1)
    with pytest.raises(ExportError, match="below the cheapest operating point.*1.2 ms"):
        p.thresholds(budget_ms=1.1, batch_size=1)


def test_which_latency_an_ms_budget_means_must_be_clear():
    with pytest.raises(ExportError, match=r"batch sizes \[1, 64\]: give batch_size="):
        points().thresholds(budget_ms=2.0)
    with pytest.raises(ExportError, match="at batch size 8 .*--batch-sizes 8"):
        points().thresholds(budget_ms=2.0, batch_size=8)
    with pytest.raises(ExportError, match="no latency was measured with onnxruntime.*"
                       "--runtime onnxruntime"):
        points(latency=[]).thresholds(budget_ms=2.0)
    old = [{k: v for k, v in c.items() if k != "heldout_exit_shares"} for c in CURVE]
    with pytest.raises(ExportError, match="no held-out exit shares.*export the run again"):
        points(curve=old).thresholds(budget_ms=2.0, batch_size=1)
