"""metrics.json from saved predictions: the exit rules beside the keys it always had."""
import pytest

from bench.config import EvaluationConfig
from bench.pipeline.evaluation import compute_metrics, rule_options
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


def test_rule_options_from_the_typed_config():
    ev = EvaluationConfig(calibration=True, criteria=("entropy",), global_threshold=True,
                          combiners=({"name": "product", "weights": "linear"},))
    assert rule_options(ev) == {"calibration": True, "criteria": ["entropy"],
                                "combiners": [{"name": "product", "weights": "linear"}],
                                "global_threshold": True}


def test_unknown_rules_fail_loudly():
    with pytest.raises(KeyError, match="unknown exit criterion"):
        compute_metrics(predictions(), MMACS, BUDGETS, criteria=["nope"])
