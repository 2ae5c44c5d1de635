"""A suite's ``evaluation:`` section as the options of ``bench.evaluate.compute_metrics``
(which computes metrics.json from saved predictions and knows nothing of suites)."""
from __future__ import annotations

from bench.config import EvaluationConfig, thaw


def rule_options(evaluation: EvaluationConfig) -> dict:
    """compute_metrics' keyword arguments for a suite's evaluation section."""
    return {"calibration": evaluation.calibration, "criteria": list(evaluation.criteria),
            "combiners": thaw(evaluation.combiners),
            "global_threshold": evaluation.global_threshold}
