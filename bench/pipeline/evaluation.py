"""metrics.json of a run, computed from its saved predictions alone (an evaluation never
retrains): anytime accuracy per exit, the budgeted-batch curve and fixed budgets with
thresholds fitted on the held-out split only, every exit rule the suite asks for
(``rules``), and the optional calibration report.

Exit rules read only the combined logits F_n (``logits`` of predictions.pt); none needs the
raw head logits f_n, so predictions saved before f_n was (``raw_logits``) evaluate fully.
"""
from __future__ import annotations

from bench import evaluate
from bench.evaluate.calibration import calibration_report
from bench.config import EvaluationConfig, thaw
from bench.store import rules as R


def finite_thresholds(thresholds) -> list[float]:
    """Confidences lie in [0, 1]: +inf (nobody leaves) becomes 2.0 and -inf (everybody
    leaves) -1.0, with the same effect and valid JSON."""
    return [2.0 if t == float("inf") else -1.0 if t == float("-inf") else float(t)
            for t in thresholds]


def rule_options(evaluation: EvaluationConfig) -> dict:
    """compute_metrics' keyword arguments for a suite's evaluation section."""
    return {"calibration": evaluation.calibration, "criteria": list(evaluation.criteria),
            "combiners": thaw(evaluation.combiners),
            "global_threshold": evaluation.global_threshold}


def compute_metrics(preds: dict, exit_mmacs: list[float], budgets: list[float],
                    calibration: bool = False, criteria=(R.DEFAULT_CRITERION,),
                    combiners=(R.DEFAULT_COMBINER,), global_threshold: bool = False) -> dict:
    """metrics.json from the saved predictions; thresholds are fitted on held-out only.
    ``calibration`` adds post-hoc calibration temperatures (one per exit, fitted on
    held-out) with test ECE and budgeted accuracy before and after (bench.evaluate.calibration).
    ``rules``: one entry per (combiner, criterion) (bench.evaluate.evaluate_rules), with the
    global-threshold fit too where ``global_threshold``; none without a held-out split."""
    val, test = preds["heldout"], preds["test"]
    val_logits, test_logits = val["logits"].float(), test["logits"].float()
    top5 = evaluate.topk_accuracy(test_logits, test["targets"], 5)
    anytime = [{"exit": n + 1, "mmacs": exit_mmacs[n], "top1": a, "top5": top5[n]}
               for n, a in enumerate(evaluate.anytime_accuracy(test_logits, test["targets"]))]
    held = evaluate.anytime_accuracy(val_logits, val["targets"])
    metrics = {"anytime": anytime,
               "heldout_anytime": [{"exit": n + 1, "top1": a} for n, a in enumerate(held)],
               "budgeted": [], "curve": [], R.RULES: []}
    if len(val["targets"]) == 0:
        return metrics  # no held-out split: no thresholds can be fitted honestly
    curve = evaluate.budget_curve(val_logits, val["targets"], test_logits, test["targets"],
                                  exit_mmacs)
    metrics["curve"] = [{"q": c["q"], "accuracy": c["accuracy"], "mmacs": c["mmacs"],
                         "exit_shares": c["exit_shares"],
                         "thresholds": finite_thresholds(c["thresholds"])}
                        for c in curve]
    fitted = evaluate.accuracy_at_budgets(val_logits, val["targets"], test_logits,
                                          test["targets"], exit_mmacs, budgets)
    metrics["budgeted"] = [{"budget_mmacs": b["budget"], "accuracy": b["accuracy"],
                            "mmacs": b["flops"], "thresholds": finite_thresholds(b["thresholds"]),
                            "exit_shares": b["exit_shares"], "q": b.get("q"),
                            "heldout_mmacs": b.get("heldout_flops")} for b in fitted]
    metrics[R.RULES] = evaluate.evaluate_rules(
        val_logits, val["targets"], test_logits, test["targets"], exit_mmacs, budgets,
        criteria=list(criteria), combiners=list(combiners), global_threshold=global_threshold)
    if calibration:
        metrics["calibration"] = calibration_metrics(val_logits, val["targets"], test_logits,
                                                     test["targets"], exit_mmacs, budgets)
    return metrics


def calibration_metrics(val_logits, val_targets, test_logits, test_targets, exit_mmacs,
                        budgets) -> dict:
    """metrics.json's "calibration": calibration temperatures T_n (softmax(F_n / T_n), not
    BoostNet's ensemble temperature t_n), test ECE (percent) and budgeted test accuracy
    before and after, thresholds refitted on the calibrated held-out logits."""
    rep = calibration_report(val_logits, val_targets, test_logits, test_targets, exit_mmacs,
                             budgets)

    def budgeted(rows):
        return [{"budget_mmacs": b["budget"], "accuracy": b["accuracy"], "mmacs": b["flops"],
                 "thresholds": finite_thresholds(b["thresholds"])} for b in rows]

    return {"calibration_temperatures": rep["calibration_temperatures"],
            "ece_unit": rep["ece_unit"], "ece_before": rep["ece_before"],
            "ece_after": rep["ece_after"], "budgeted_before": budgeted(rep["budgeted_before"]),
            "budgeted_after": budgeted(rep["budgeted_after"])}
