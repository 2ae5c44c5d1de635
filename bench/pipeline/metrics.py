"""A suite's ``evaluation:`` section as the options of ``bench.evaluate.compute_metrics``
(which computes metrics.json from saved predictions and knows nothing of suites), and
whether a finished run's metrics.json lacks what the section now asks for."""
from __future__ import annotations

from bench.config import EvaluationConfig, thaw
from bench.evaluate import ANYTIME_QUALITY, ERROR, RISK_CONTROL
from bench.store import rules as R


def rule_options(evaluation: EvaluationConfig) -> dict:
    """compute_metrics' keyword arguments for a suite's evaluation section."""
    risk = evaluation.risk_control
    sets = evaluation.prediction_sets
    return {"calibration": evaluation.calibration, "criteria": list(evaluation.criteria),
            "combiners": thaw(evaluation.combiners),
            "global_threshold": evaluation.global_threshold,
            "risk_control": None if risk is None else thaw(risk.as_dict()),
            "alphas": [] if sets is None else list(sets.alphas)}


def trust_outdated(evaluation: EvaluationConfig, metrics: dict | None) -> bool:
    """Whether ``metrics`` lack a trustworthy-exit block the section asks for: anytime
    quality (always), the risk-controlled thresholds with these options, prediction sets at
    these levels, for the default rule and every asked rule it has. A block recorded as an
    error (the data could not give it) counts as present: evaluating again gives it no more."""
    metrics = metrics or {}
    if not metrics.get("curve"):
        return False  # no held-out split: nothing can be fitted, no rules, no blocks
    blocks = [metrics] + R.asked_entries(metrics, evaluation.criteria, evaluation.combiners)
    return any(block_outdated(evaluation, b) for b in blocks)


def block_outdated(evaluation: EvaluationConfig, entry: dict) -> bool:
    quality = entry.get(ANYTIME_QUALITY)
    if not isinstance(quality, dict):
        return True
    sets = evaluation.prediction_sets
    if sets is not None and ERROR not in quality and "prediction_sets_skipped" not in quality:
        have = {p.get("alpha") for p in quality.get("prediction_sets") or []}
        if not set(sets.alphas) <= have:
            return True
    risk = evaluation.risk_control
    return risk is not None and risk_outdated(risk, entry.get(RISK_CONTROL))


def risk_outdated(risk, block) -> bool:
    if not isinstance(block, dict):
        return True
    if ERROR in block:
        return False
    have = {(r.get("loss"), r.get("procedure"), r.get("epsilon"))
            for r in block.get("results") or []}
    asked = {(loss, p, e) for loss in risk.losses for p in risk.procedures
             for e in risk.epsilons}
    validity = block.get("validity") or {}
    return (not asked <= have or block.get("delta") != risk.delta
            or block.get("grid") != risk.grid or validity.get("repeats") != risk.repeats)
