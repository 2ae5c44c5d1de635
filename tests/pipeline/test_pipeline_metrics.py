"""bench.pipeline.metrics: a suite's evaluation section as compute_metrics' options."""
from bench.config import EvaluationConfig
from bench.pipeline.metrics import rule_options


def test_rule_options_from_the_typed_config():
    ev = EvaluationConfig(calibration=True, criteria=("entropy",), global_threshold=True,
                          combiners=({"name": "product", "weights": "linear"},))
    assert rule_options(ev) == {"calibration": True, "criteria": ["entropy"],
                                "combiners": [{"name": "product", "weights": "linear"}],
                                "global_threshold": True}
