"""Everything computed from saved logits (an evaluation never retrains): anytime and
budgeted accuracy with thresholds fitted on the held-out split, post-hoc calibration, exit
criteria and combiners, and exit rules under budgets.

    from bench import evaluate
    evaluate.anytime_accuracy(preds, targets)                  # percent, per exit
    evaluate.accuracy_at_budgets(val_preds, val_y, test_preds, test_y, exit_mmacs, budgets)
    evaluate.evaluate_rules(val_logits, val_y, test_logits, test_y, exit_mmacs, budgets,
                            criteria=["max_softmax", "entropy"], combiners=["none"])
"""
from bench.evaluate.budgets import (DEFAULT_QS, ScoredSplit, accuracy_at_budgets,
                                    anytime_accuracy, assign_exits, budget_curve, confidences,
                                    exit_counts, exit_prior, global_thresholds, max_softmax,
                                    solve_global, solve_q, topk_accuracy)
from bench.evaluate import combiners, criteria  # noqa: E402  (registries, before rules)
from bench.evaluate.calibration import (apply_temperatures, calibration_report,
                                        expected_calibration_error, fit_temperatures)
from bench.evaluate.rules import (combine, correct_at, evaluate_rules, finite, fit_global,
                                  fit_per_exit, scored_split)
from bench.evaluate import paper  # noqa: E402

__all__ = ["DEFAULT_QS", "ScoredSplit", "accuracy_at_budgets", "anytime_accuracy",
           "apply_temperatures", "assign_exits", "budget_curve", "calibration_report",
           "combine", "combiners", "confidences", "correct_at", "criteria", "evaluate_rules",
           "exit_counts", "exit_prior", "expected_calibration_error", "finite", "fit_global",
           "fit_per_exit", "fit_temperatures", "global_thresholds", "max_softmax", "paper",
           "scored_split", "solve_global", "solve_q", "topk_accuracy"]

# --- trustworthy exits (docs/trustworthy-exits.md): risk-controlled thresholds, anytime
# quality, conformal prediction sets, and the metrics.json blocks built from them
from bench.evaluate import conformal  # noqa: E402
from bench.evaluate.anytime_quality import (DEFAULT_TAUS, correctness_decreases, exit_ece,
                                            failure_auroc, monotonicity)
from bench.evaluate.risk import (DEFAULT_EPSILONS, LOSS_BOUNDS, PROCEDURES, RiskControl,
                                 hb_p_value, measure_threshold, risk_control)
from bench.evaluate.risk_validity import validity_diagnostic
from bench.evaluate.trustworthy import trustworthy_metrics

__all__ += ["DEFAULT_EPSILONS", "DEFAULT_TAUS", "LOSS_BOUNDS", "PROCEDURES", "RiskControl",
            "conformal", "correctness_decreases", "exit_ece", "failure_auroc", "hb_p_value",
            "measure_threshold", "monotonicity", "risk_control", "trustworthy_metrics",
            "validity_diagnostic"]
# --- end of trustworthy exits
