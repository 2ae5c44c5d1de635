"""bench.evaluate.metrics: metrics.json from saved predictions, the exit rules beside the
keys it always had."""
import json
import math

import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import compute_metrics, criteria
from bench.evaluate.rules import combine
from report_fixtures import fake_logits

MMACS = [1.0, 2.0, 3.0]
BUDGETS = [1.5, 2.5]


def predictions(m=300, raw=True, heldout=True):
    preds = {}
    for i, split in enumerate(("heldout", "test")):
        logits, targets = fake_logits(3, m if heldout or split == "test" else 0, 10, 1.0, i)
        preds[split] = {"logits": logits, "targets": targets}
        if raw:
            preds[split]["raw_logits"] = (logits * 0.5).half()  # not what rules read
    return preds


def test_the_default_rule_is_the_top_level_metrics():
    metrics = compute_metrics(predictions(), MMACS, BUDGETS)
    (rule,) = metrics["rules"]
    assert (rule["combiner"], rule["combiner_options"], rule["criterion"]) == \
        ("none", {}, "max_softmax")
    assert [a["top1"] for a in rule["anytime"]] == [a["top1"] for a in metrics["anytime"]]
    keys = ("budget_mmacs", "accuracy", "mmacs", "thresholds", "exit_shares", "q",
            "heldout_mmacs")
    assert [{k: b[k] for k in keys} for b in rule["budgeted"]] == \
        [{k: b[k] for k in keys} for b in metrics["budgeted"]]
    assert rule["curve"] == metrics["curve"]
    assert "budgeted_global" not in rule


def test_every_pair_asked_for_combiners_outermost():
    metrics = compute_metrics(predictions(), MMACS, BUDGETS, criteria=["entropy", "margin"],
                              combiners=["none", {"name": "product", "weights": "linear"}],
                              global_threshold=True)
    pairs = [(r["combiner"], r["combiner_options"], r["criterion"]) for r in metrics["rules"]]
    assert pairs == [("none", {}, "entropy"), ("none", {}, "margin"),
                     ("product", {"weights": "linear"}, "entropy"),
                     ("product", {"weights": "linear"}, "margin")]
    for r in metrics["rules"]:
        assert [b["budget_mmacs"] for b in r["budgeted"]] == BUDGETS
        assert [b["budget_mmacs"] for b in r["budgeted_global"]] == BUDGETS
        assert all(b["heldout_mmacs"] <= b["budget_mmacs"] + 1e-9 for b in r["budgeted"])
    # the top-level keys stay the default rule whatever the suite asks for
    default = compute_metrics(predictions(), MMACS, BUDGETS)
    assert {k: metrics[k] for k in ("anytime", "budgeted", "curve")} == \
        {k: default[k] for k in ("anytime", "budgeted", "curve")}


def test_raw_logits_are_not_needed():
    kwargs = dict(criteria=["max_softmax", "patience"], combiners=["none", "caching"])
    with_raw = compute_metrics(predictions(raw=True), MMACS, BUDGETS, **kwargs)
    without = compute_metrics(predictions(raw=False), MMACS, BUDGETS, **kwargs)
    assert with_raw == without


def test_no_heldout_split_no_rules():
    metrics = compute_metrics(predictions(heldout=False), MMACS, BUDGETS,
                              criteria=["entropy"])
    assert metrics["rules"] == [] and metrics["budgeted"] == [] and metrics["curve"] == []
    assert len(metrics["anytime"]) == 3


def test_unknown_rules_fail_loudly():
    with pytest.raises(KeyError, match="unknown exit criterion"):
        compute_metrics(predictions(), MMACS, BUDGETS, criteria=["nope"])


def test_thresholds_are_finite_numbers_for_json():
    # a tiny budget sends everyone to exit 1 (-inf there), the largest nobody before the
    # last exit (+inf): both written as numbers with the same effect
    metrics = compute_metrics(predictions(), MMACS, [1.0, 3.0], calibration=True)
    budgeted = metrics["budgeted"] + metrics["calibration"]["budgeted_before"]
    for row in budgeted + metrics["curve"]:
        assert all(math.isfinite(t) for t in row["thresholds"])
    assert metrics["budgeted"][0]["thresholds"] == [-1.0, 2.0, -1.0]  # nobody left at 2
    assert metrics["budgeted"][1]["thresholds"] == [2.0, 2.0, -1.0]


# -- trustworthy exits (docs/trustworthy-exits.md) ---------------------------------------
RISK = {"losses": ["consistency", "accuracy_gap"], "procedures": ["crc", "ltt"],
        "epsilons": [0.05, 0.2], "delta": 0.1, "grid": 51, "repeats": 3}


def test_every_run_gets_anytime_quality_and_risk_control_only_where_asked():
    plain = compute_metrics(predictions(), MMACS, BUDGETS)
    assert "risk_control" not in plain and "risk_control" not in plain["rules"][0]
    quality = plain["anytime_quality"]
    assert [m["tau"] for m in quality["monotonicity"]] == list(ev.DEFAULT_TAUS)
    assert [e["exit"] for e in quality["exits"]] == [1, 2, 3]
    assert quality["prediction_sets"] == []
    asked = compute_metrics(predictions(), MMACS, BUDGETS, risk_control=RISK, alphas=[0.1])
    assert len(asked["risk_control"]["results"]) == 2 * 2 * 2
    assert asked["risk_control"]["grid"] == 51 and asked["risk_control"]["validity"]["repeats"] == 3
    assert [p["alpha"] for p in asked["anytime_quality"]["prediction_sets"]] == [0.1]
    json.dumps(asked, allow_nan=False)  # plain JSON


def test_the_blocks_are_the_library_on_the_rules_softmax_and_mapped_score():
    preds = predictions()
    metrics = compute_metrics(preds, MMACS, BUDGETS, criteria=["max_softmax", "entropy"],
                              combiners=["none", "product"], risk_control=RISK, alphas=[0.1])
    for entry in metrics["rules"]:
        spec = {"name": entry["combiner"], **entry["combiner_options"]}
        crit = criteria.create(entry["criterion"])
        inputs = []
        for split in ("heldout", "test"):
            z, _ = combine(preds[split]["logits"].float(), spec)
            bounds = crit.bounds(3, 10)
            low, high = bounds
            probs = torch.softmax(z.double(), -1).transpose(0, 1)  # [N, L, C]
            conf = ((crit.score(z) - low) / (high - low)).transpose(0, 1)  # [N, L] in [0, 1]
            inputs.append((probs, preds[split]["targets"], conf))
        (hp, hy, hc), (tp, ty, tc) = inputs
        expected = ev.trustworthy_metrics(hp, hy, tp, ty, MMACS, heldout_confidence=hc,
                                          test_confidence=tc, alphas=(0.1,), **RISK)
        assert entry["risk_control"] == expected["risk_control"]
        assert entry["anytime_quality"] == expected["anytime_quality"]
    default = metrics["rules"][0]
    assert (default["combiner"], default["criterion"]) == ("none", "max_softmax")
    assert metrics["risk_control"] == default["risk_control"]
    assert metrics["anytime_quality"] == default["anytime_quality"]
    # entropy ranks the images in another order than max softmax: other thresholds
    entropy = metrics["rules"][1]
    assert entropy["criterion"] == "entropy"
    assert [r["threshold"] for r in entropy["risk_control"]["results"]] != \
        [r["threshold"] for r in default["risk_control"]["results"]]


def test_the_top_level_blocks_are_the_default_rules_when_the_suite_leaves_it_out():
    metrics = compute_metrics(predictions(), MMACS, BUDGETS, criteria=["entropy"],
                              risk_control=RISK)
    default = compute_metrics(predictions(), MMACS, BUDGETS, risk_control=RISK)
    assert metrics["risk_control"] == default["risk_control"]
    assert metrics["anytime_quality"] == default["anytime_quality"]
    assert metrics["rules"][0]["risk_control"] != default["risk_control"]


def test_max_softmax_scores_are_unchanged_by_the_map_to_zero_one():
    z, _ = fake_logits(3, 200, 10, 1.0, 5)
    scores = criteria.max_softmax(z.float())
    probs, conf = ev.rule_inputs(z.float(), scores, criteria.create("max_softmax").bounds(3, 10))
    assert torch.equal(conf, scores.transpose(0, 1))  # bit for bit
    assert probs.shape == (200, 3, 10)
    assert torch.allclose(probs.sum(-1), torch.ones(200, 3, dtype=torch.float64))


@pytest.mark.parametrize("name", ["entropy", "margin", "patience"])
def test_other_criteria_map_into_zero_one_keeping_their_order(name):
    z, _ = fake_logits(3, 200, 10, 1.0, 6)
    crit = criteria.create(name)
    scores = crit.score(z.float())
    _, conf = ev.rule_inputs(z.float(), scores, crit.bounds(3, 10))
    assert conf.min() >= 0 and conf.max() <= 1
    for exit_ in range(3):  # the same order of images at every exit
        assert torch.equal(scores[exit_].argsort(stable=True),
                           conf[:, exit_].argsort(stable=True))
    if name == "entropy":  # -H in [-ln 10, 0]: a uniform prediction is 0, a sure one 1
        uniform = torch.zeros(3, 1, 10)
        sure = torch.full((3, 1, 10), -1e4)
        sure[..., 0] = 0
        _, c = ev.rule_inputs(torch.cat([uniform, sure], 1),
                              crit.score(torch.cat([uniform, sure], 1)), crit.bounds(3, 10))
        assert c[0].tolist() == pytest.approx([0.0] * 3, abs=1e-12)
        assert c[1].tolist() == pytest.approx([1.0] * 3, abs=1e-12)


def test_a_small_held_out_split_records_the_error_and_keeps_the_rest():
    preds = predictions()
    preds["heldout"] = {k: v[:, :12] if k == "logits" else v[:12]
                        for k, v in preds["heldout"].items()}
    metrics = compute_metrics(preds, MMACS, BUDGETS, risk_control=RISK, alphas=[0.1])
    message = "the held-out split has 12 images; calibrating needs at least 20"
    assert metrics["risk_control"] == {"error": message}
    assert metrics["rules"][0]["risk_control"] == {"error": message}
    quality = metrics["anytime_quality"]
    assert quality["prediction_sets"] == [] and "12 images" in quality["prediction_sets_skipped"]
    assert len(quality["exits"]) == 3 and len(quality["monotonicity"]) == 7
    assert len(metrics["budgeted"]) == 2 and metrics["curve"]  # the other metrics stay


@pytest.mark.parametrize("options, message", [
    ({**RISK, "epsilons": [0.05, 1.0]}, "epsilon must be in (0, 1), got 1.0"),
    ({**RISK, "delta": 0.0}, "delta must be in (0, 1), got 0.0"),
    ({**RISK, "losses": ["hinge"]}, "loss must be one of"),
    ({**RISK, "procedures": ["bonferroni"]}, "procedure must be one of"),
    ({**RISK, "grid": 1}, "grid must be an integer >= 2"),
    ({**RISK, "repeats": 0}, "repeats must be an integer >= 1"),
])
def test_bad_trust_options_are_refused_before_anything_is_computed(options, message):
    with pytest.raises(ValueError) as err:
        compute_metrics(predictions(), MMACS, BUDGETS, risk_control=options)
    assert message in str(err.value)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        compute_metrics(predictions(), MMACS, BUDGETS, alphas=[0.1, 2.0])
