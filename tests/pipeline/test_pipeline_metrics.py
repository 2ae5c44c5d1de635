"""bench.pipeline.metrics: a suite's evaluation section as compute_metrics' options, and
whether a finished run's metrics lack a trustworthy-exit block the section asks for."""
from bench.config import EvaluationConfig
from bench.pipeline.metrics import rule_options, trust_outdated


def test_rule_options_from_the_typed_config():
    ev = EvaluationConfig(calibration=True, criteria=("entropy",), global_threshold=True,
                          combiners=({"name": "product", "weights": "linear"},))
    assert rule_options(ev) == {"calibration": True, "criteria": ["entropy"],
                                "combiners": [{"name": "product", "weights": "linear"}],
                                "global_threshold": True, "risk_control": None, "alphas": []}


def test_trust_options_from_the_typed_config():
    ev = EvaluationConfig.model_validate({"risk_control": {"epsilons": [0.05], "delta": 0.2},
                                          "prediction_sets": {"alphas": [0.1]}})
    options = rule_options(ev)
    assert options["risk_control"] == {"losses": ["consistency", "accuracy_gap", "brier_gap"],
                                       "procedures": ["crc", "ucb", "ltt"],
                                       "epsilons": [0.05], "delta": 0.2, "grid": 101,
                                       "repeats": 100}
    assert options["alphas"] == [0.1]


QUALITY = {"monotonicity": [], "exits": [], "prediction_sets": [{"alpha": 0.1}]}
RISK = {"delta": 0.1, "grid": 101, "validity": {"repeats": 100},
        "results": [{"loss": loss, "procedure": p, "epsilon": 0.05}
                    for loss in ("consistency", "accuracy_gap", "brier_gap")
                    for p in ("crc", "ucb", "ltt")]}


def metrics(quality=QUALITY, risk=RISK, rule=True):
    blocks = {k: v for k, v in (("anytime_quality", quality), ("risk_control", risk)) if v}
    rules = [{"combiner": "none", "combiner_options": {}, "criterion": "max_softmax",
              **(blocks if rule else {})}]
    return {"curve": [{"q": 1.0}], "rules": rules, **blocks}


def test_what_counts_as_outdated():
    plain = EvaluationConfig()
    asked = EvaluationConfig.model_validate({"risk_control": {"epsilons": [0.05]},
                                             "prediction_sets": {"alphas": [0.1]}})
    assert not trust_outdated(asked, metrics())
    assert not trust_outdated(plain, metrics(risk=None))
    assert trust_outdated(plain, metrics(quality=None, risk=None))  # runs evaluated before
    assert trust_outdated(asked, metrics(risk=None))
    assert trust_outdated(asked, metrics(rule=False))  # the rule's own blocks are missing
    assert trust_outdated(asked, metrics(quality={**QUALITY, "prediction_sets": []}))
    more = EvaluationConfig.model_validate({"risk_control": {"epsilons": [0.05, 0.1]}})
    assert trust_outdated(more, metrics())
    assert trust_outdated(EvaluationConfig.model_validate({"risk_control": {
        "epsilons": [0.05], "repeats": 10}}), metrics())
    # an error (too few held-out images) or skipped sets are not computed again
    assert not trust_outdated(asked, metrics(risk={"error": "too few"}))
    assert not trust_outdated(asked, metrics(
        quality={**QUALITY, "prediction_sets": [], "prediction_sets_skipped": "too few"}))
    # a run without a held-out split has nothing to fit
    assert not trust_outdated(asked, {"curve": [], "rules": []})
