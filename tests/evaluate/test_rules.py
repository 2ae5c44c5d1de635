import inspect
import json
import math
import sys

import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import combiners, criteria, rules
from bench.evaluate import (correct_at, evaluate_rules, finite_thresholds, fit_global,
                            fit_per_exit, scored_split)

FLOPS = [1.0, 2.0, 4.0, 8.0]
BUDGETS = [1.0, 2.5, 5.0, 8.0]


def random_split(seed, n=4, m=200, c=10, tied=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(c, (m,), generator=g)
    logits = torch.randn(n, m, c, generator=g) * torch.linspace(1, 3, n)[:, None, None]
    logits[:, torch.arange(m), y] += torch.linspace(0.5, 2.5, n)[:, None]  # later exits better
    return (logits.round() if tied else logits), y


def legacy_finite(thresholds):
    """Max-softmax thresholds as JSON numbers, as metrics.json has always written them."""
    return [2.0 if t == math.inf else -1.0 if t == -math.inf else t for t in thresholds]


@pytest.mark.parametrize("tied", [False, True])
def test_generic_max_softmax_path_is_bit_identical_to_the_legacy_one(tied):
    val, yv = random_split(0, tied=tied)
    test, yt = random_split(1, m=300, tied=tied)
    old = ev.accuracy_at_budgets(val, yv, test, yt, FLOPS, BUDGETS)
    old_curve = ev.budget_curve(val, yv, test, yt, FLOPS)
    (row,) = evaluate_rules(val, yv, test, yt, FLOPS, BUDGETS)
    assert (row["combiner"], row["criterion"], row["score_bounds"]) == ("none", "max_softmax",
                                                                         [0.0, 1.0])
    for a, b in zip(old, row["budgeted"], strict=True):
        assert (a["budget"], a["accuracy"], a["flops"], legacy_finite(a["thresholds"]),
                a["exit_shares"], a["q"], a["heldout_flops"], a["heldout_accuracy"]) == (
            b["budget_mmacs"], b["accuracy"], b["mmacs"], b["thresholds"], b["exit_shares"],
            b["q"], b["heldout_mmacs"], b["heldout_accuracy"])
    assert row["curve"] == [{**p, "thresholds": legacy_finite(p["thresholds"])}
                            for p in old_curve]
    assert [a["top1"] for a in row["anytime"]] == ev.anytime_accuracy(test, yt)
    assert [a["top1"] for a in row["heldout_anytime"]] == ev.anytime_accuracy(val, yv)
    assert [a["mmacs"] for a in row["anytime"]] == FLOPS


def test_every_pair_gives_a_json_ready_row_within_budget():
    val, yv = random_split(2)
    test, yt = random_split(3, m=150)
    specs = ["none", {"name": "product", "weights": "linear"}, "caching"]
    rows = evaluate_rules(val, yv, test, yt, FLOPS, BUDGETS, criteria=criteria.names(),
                          combiners=specs, global_threshold=True, qs=[0.5, 1.0, 2.0])
    json.dumps(rows, allow_nan=False)  # strict JSON: no inf, no NaN
    assert [(r["combiner"], r["criterion"]) for r in rows] == [
        (c, k) for c in ("none", "product", "caching") for k in criteria.names()]
    assert rows[4]["combiner_options"] == {"weights": "linear"}
    step = max(b - a for a, b in zip(FLOPS, FLOPS[1:])) / val.shape[1]  # one held-out sample
    for r in rows:
        assert len(r["curve"]) == 3 and len(r["budgeted"]) == len(r["budgeted_global"]) == 4
        for fit in ("budgeted", "budgeted_global"):
            for b, row in zip(BUDGETS, r[fit]):
                assert row["budget_mmacs"] == b
                assert row["heldout_mmacs"] <= b + 1e-9
                assert row["mmacs"] == pytest.approx(
                    sum(s * c for s, c in zip(row["exit_shares"], FLOPS)))
                low, high = r["score_bounds"]
                assert all(low - 1 <= t <= high + 1 for t in row["thresholds"])
            assert r[fit][0]["exit_shares"][0] == 1.0 and r[fit][-1]["exit_shares"][-1] == 1.0
        for b, row in zip(BUDGETS, r["budgeted"]):  # the per-exit fit is within one sample
            assert row["heldout_mmacs"] >= b - step - 1e-9
        tau_row = r["budgeted_global"][1]
        assert set(tau_row["thresholds"][:-1]) == {tau_row["tau"]}  # one tau at every exit


def test_anytime_is_the_combined_prediction():
    val, yv = random_split(4)
    test, yt = random_split(5, m=120)
    rows = evaluate_rules(val, yv, test, yt, FLOPS, [2.0], combiners=["caching", "product"])
    for r in rows:
        z = combiners.create(r["combiner"])(test)
        hits = (z.argmax(-1) == yt).double().mean(-1) * 100
        assert [a["top1"] for a in r["anytime"]] == pytest.approx(hits.tolist())
    # caching's last exit is the most confident exit of each sample, not exit N
    assert rows[0]["anytime"][-1]["top1"] != ev.anytime_accuracy(test, yt)[-1]


def test_fits_take_held_out_data_only(monkeypatch):
    for fit in (fit_per_exit, fit_global):
        assert list(inspect.signature(fit).parameters) == ["heldout", "flops", "budget"]
    val, yv = random_split(6, m=170)
    test, yt = random_split(7, m=90)
    seen = []
    for name in ("thresholds", "evaluate"):
        real = getattr(ev.ScoredSplit, name)

        def spy(self, *args, _real=real, _name=name):
            seen.append((_name, self.m, sys._getframe(1).f_code.co_name))
            return _real(self, *args)

        monkeypatch.setattr(ev.ScoredSplit, name, spy)
    evaluate_rules(val, yv, test, yt, FLOPS, [3.0], criteria=criteria.names(),
                   combiners=combiners.names(), global_threshold=True, qs=[1.0])
    fitted_on = {m for name, m, _ in seen if name == "thresholds"}
    assert fitted_on == {170}  # every threshold fit read the held-out split (170), never test
    inside_fits = {m for _, m, caller in seen if caller not in ("_fitted", "_budget_row")}
    assert inside_fits == {170}  # the budget searches evaluated held-out costs only


def test_thresholds_do_not_change_with_the_test_split():
    val, yv = random_split(8)
    test, yt = random_split(9, m=150)
    other, yo = random_split(10, m=40, c=10)
    kw = dict(criteria=criteria.names(), combiners=combiners.names(), global_threshold=True,
              qs=[0.7, 1.3])
    a = evaluate_rules(val, yv, test, yt, FLOPS, BUDGETS, **kw)
    b = evaluate_rules(val, yv, other * 7, yo, FLOPS, BUDGETS, **kw)
    for ra, rb in zip(a, b):
        for key in ("budgeted", "budgeted_global", "curve"):
            assert [p["thresholds"] for p in ra[key]] == [p["thresholds"] for p in rb[key]]
        assert [p["heldout_mmacs"] for p in ra["budgeted"]] == [
            p["heldout_mmacs"] for p in rb["budgeted"]]


def test_correct_at_matches_the_reported_accuracy():
    val, yv = random_split(11)
    test, yt = random_split(12, m=160)
    rows = evaluate_rules(val, yv, test, yt, FLOPS, [2.5, 5.0], criteria=criteria.names(),
                          combiners=combiners.names(), global_threshold=True)
    for r in rows:
        for row in r["budgeted"] + r["budgeted_global"]:
            ok = correct_at(test, yt, row["thresholds"], r["criterion"], r["combiner"])
            assert ok.dtype == torch.bool and ok.shape == (160,)
            assert 100.0 * ok.sum().item() / 160 == pytest.approx(row["accuracy"])
    # finite stand-ins and the infinite thresholds they stand for give the same answer
    split = scored_split(*rules.combine(val), yv, "entropy")
    t = fit_per_exit(split, FLOPS, 1.0)["thresholds"]
    assert t[0] == -math.inf
    assert torch.equal(correct_at(test, yt, t, "entropy"),
                       correct_at(test, yt, finite_thresholds(
                           t, criteria.create("entropy").bounds(4, 10)), "entropy"))
    with pytest.raises(ValueError, match="3 thresholds for 4 exits"):
        correct_at(test, yt, t[:3])


def test_bad_input_is_named():
    val, yv = random_split(13, m=30)
    with pytest.raises(ValueError, match="held-out targets have 29 entries for 30 samples"):
        evaluate_rules(val, yv[:29], val, yv, FLOPS, [2.0])
    with pytest.raises(ValueError, match="the test split is empty"):
        evaluate_rules(val, yv, val[:, :0], yv[:0], FLOPS, [2.0])
    with pytest.raises(ValueError, match="differ in exits or classes"):
        evaluate_rules(val, yv, val[:3], yv, FLOPS, [2.0])
    with pytest.raises(ValueError, match=r"budget 9\.0 is outside the valid range \[1\.0, 8\.0\]"):
        evaluate_rules(val, yv, val, yv, FLOPS, [9.0])
    with pytest.raises(KeyError, match="unknown exit criterion 'ratio'"):
        evaluate_rules(val, yv, val, yv, FLOPS, [2.0], criteria=["ratio"])
    with pytest.raises(KeyError, match="unknown combiner 'vote'"):
        evaluate_rules(val, yv, val, yv, FLOPS, [2.0], combiners=["none", "vote"])
    with pytest.raises(ValueError, match="a combiner is a name or a mapping"):
        evaluate_rules(val, yv, val, yv, FLOPS, [2.0], combiners=[{"weights": [1, 2]}])
    with pytest.raises(ValueError, match="valid options"):
        evaluate_rules(val, yv, val, yv, FLOPS, [2.0], combiners=[{"name": "none", "x": 1}])
