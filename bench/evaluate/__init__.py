"""Everything computed from saved logits (an evaluation never retrains): anytime and
budgeted accuracy with thresholds fitted on the held-out split, post-hoc calibration, exit
criteria and combiners, exit rules under budgets, and metrics.json's content.

    from bench import evaluate
    evaluate.anytime_accuracy(preds, targets)                  # percent, per exit
    evaluate.accuracy_at_budgets(val_preds, val_y, test_preds, test_y, exit_mmacs, budgets)
    evaluate.evaluate_rules(val_logits, val_y, test_logits, test_y, exit_mmacs, budgets,
                            criteria=["max_softmax", "entropy"], combiners=["none"])

Modules: ``inputs`` (the shapes every function takes), ``accuracy`` (anytime),
``criteria`` and ``combiners`` (registries; the one max softmax), ``thresholds`` (the exit
rule, the MSDNet fit, finite stand-ins for +-inf), ``budgets`` (budget search, budgeted
accuracy), ``calibration``, ``rules`` (every combiner x criterion), ``metrics``
(metrics.json), ``paper`` (published numbers); trustworthy exits (docs/trustworthy-exits.md):
``risk`` and ``risk_validity`` (risk-controlled thresholds), ``anytime_quality``, ``conformal``
(prediction sets), ``trustworthy`` (their metrics.json blocks). This list of imports is the
public surface.
"""
from bench.evaluate import combiners, conformal, criteria, paper
from bench.evaluate.accuracy import anytime_accuracy, topk_accuracy
from bench.evaluate.anytime_quality import (DEFAULT_TAUS, correctness_decreases, exit_ece,
                                            failure_auroc, monotonicity)
from bench.evaluate.budgets import (DEFAULT_QS, accuracy_at_budgets, budget_curve, solve_global,
                                    solve_q)
from bench.evaluate.calibration import (apply_temperatures, calibration_report,
                                        expected_calibration_error, fit_temperatures)
from bench.evaluate.criteria import MAX_SOFTMAX_BOUNDS, confidences, max_softmax
from bench.evaluate.inputs import (as_targets, check_budgets, check_exit_costs, check_logits,
                                   stack_logits)
from bench.evaluate.metrics import (ANYTIME_QUALITY, ERROR, RISK_CONTROL, RULES,
                                    calibration_metrics, compute_metrics)
from bench.evaluate.risk import (DEFAULT_EPSILONS, LOSS_BOUNDS, PROCEDURES, RiskControl,
                                 hb_p_value, measure_threshold, risk_control)
from bench.evaluate.risk_validity import validity_diagnostic
from bench.evaluate.rules import (DEFAULT_COMBINER, DEFAULT_CRITERION, GLOBAL, PER_EXIT, combine,
                                  correct_at, evaluate_rules, fit_global, fit_per_exit,
                                  scored_split, split_combiner)
from bench.evaluate.thresholds import (ScoredSplit, assign_exits, exit_counts, exit_prior,
                                       exits_from_scores, finite_thresholds, forced_exit,
                                       global_thresholds)
from bench.evaluate.trustworthy import (anytime_quality_metrics, risk_control_metrics,
                                        rule_inputs, trustworthy_metrics)

__all__ = [
    "ANYTIME_QUALITY",
    "DEFAULT_COMBINER",
    "DEFAULT_CRITERION",
    "DEFAULT_EPSILONS",
    "DEFAULT_QS",
    "DEFAULT_TAUS",
    "ERROR",
    "GLOBAL",
    "LOSS_BOUNDS",
    "MAX_SOFTMAX_BOUNDS",
    "PER_EXIT",
    "PROCEDURES",
    "RISK_CONTROL",
    "RULES",
    "RiskControl",
    "ScoredSplit",
    "accuracy_at_budgets",
    "anytime_accuracy",
    "anytime_quality_metrics",
    "apply_temperatures",
    "as_targets",
    "assign_exits",
    "budget_curve",
    "calibration_metrics",
    "calibration_report",
    "check_budgets",
    "check_exit_costs",
    "check_logits",
    "combine",
    "combiners",
    "compute_metrics",
    "confidences",
    "conformal",
    "correct_at",
    "correctness_decreases",
    "criteria",
    "evaluate_rules",
    "exit_counts",
    "exit_ece",
    "exit_prior",
    "exits_from_scores",
    "expected_calibration_error",
    "failure_auroc",
    "finite_thresholds",
    "fit_global",
    "fit_per_exit",
    "fit_temperatures",
    "forced_exit",
    "global_thresholds",
    "hb_p_value",
    "max_softmax",
    "measure_threshold",
    "monotonicity",
    "paper",
    "risk_control",
    "risk_control_metrics",
    "rule_inputs",
    "scored_split",
    "solve_global",
    "solve_q",
    "split_combiner",
    "stack_logits",
    "topk_accuracy",
    "trustworthy_metrics",
    "validity_diagnostic",
]
