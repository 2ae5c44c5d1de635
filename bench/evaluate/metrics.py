"""metrics.json's content, computed from a run's saved predictions alone (an evaluation
never retrains): anytime accuracy per exit, the budgeted-batch curve and fixed budgets
with thresholds fitted on the held-out split only, every exit rule asked for (``rules``),
and the optional calibration report. Plain arguments in, plain JSON-ready data out: the
suite's options are turned into these arguments by the pipeline, the file is written by
the store (bench.store.rules reads the rule entries back).

Exit rules read only the combined logits F_n (``logits`` of predictions.pt); none needs the
raw head logits f_n, so predictions saved before f_n was (``raw_logits``) evaluate fully.
Thresholds are written as finite numbers (``bench.evaluate.thresholds.finite_thresholds``).
"""
from __future__ import annotations

from bench.evaluate.accuracy import anytime_accuracy, topk_accuracy
from bench.evaluate.budgets import accuracy_at_budgets, budget_curve
from bench.evaluate.calibration import calibration_report
from bench.evaluate.rules import DEFAULT_COMBINER, DEFAULT_CRITERION, evaluate_rules
from bench.evaluate.thresholds import finite_thresholds

RULES = "rules"  # metrics.json's key of the exit-rule entries (bench.evaluate.rules)


def compute_metrics(preds: dict, exit_mmacs: list[float], budgets: list[float],
                    calibration: bool = False, criteria=(DEFAULT_CRITERION,),
                    combiners=(DEFAULT_COMBINER,), global_threshold: bool = False) -> dict:
    """metrics.json from the saved predictions ``{"heldout": {"logits", "targets"}, "test":
    ...}`` (logits [N_exits, M, C]); thresholds are fitted on held-out only.
    ``calibration`` adds post-hoc calibration temperatures (one per exit, fitted on
    held-out) with test ECE and budgeted accuracy before and after (bench.evaluate.calibration).
    ``rules``: one entry per (combiner, criterion) (bench.evaluate.evaluate_rules), with the
    global-threshold fit too where ``global_threshold``; none without a held-out split."""
    val, test = preds["heldout"], preds["test"]
    val_logits, test_logits = val["logits"].float(), test["logits"].float()
    top5 = topk_accuracy(test_logits, test["targets"], 5)
    anytime = [{"exit": n + 1, "mmacs": exit_mmacs[n], "top1": a, "top5": top5[n]}
               for n, a in enumerate(anytime_accuracy(test_logits, test["targets"]))]
    held = anytime_accuracy(val_logits, val["targets"])
    metrics = {"anytime": anytime,
               "heldout_anytime": [{"exit": n + 1, "top1": a} for n, a in enumerate(held)],
               "budgeted": [], "curve": [], RULES: []}
    if len(val["targets"]) == 0:
        return metrics  # no held-out split: no thresholds can be fitted honestly
    curve = budget_curve(val_logits, val["targets"], test_logits, test["targets"], exit_mmacs)
    metrics["curve"] = [{"q": c["q"], "accuracy": c["accuracy"], "mmacs": c["mmacs"],
                         "exit_shares": c["exit_shares"],
                         "thresholds": finite_thresholds(c["thresholds"])}
                        for c in curve]
    fitted = accuracy_at_budgets(val_logits, val["targets"], test_logits, test["targets"],
                                 exit_mmacs, budgets)
    metrics["budgeted"] = [{"budget_mmacs": b["budget"], "accuracy": b["accuracy"],
                            "mmacs": b["flops"], "thresholds": finite_thresholds(b["thresholds"]),
                            "exit_shares": b["exit_shares"], "q": b.get("q"),
                            "heldout_mmacs": b.get("heldout_flops")} for b in fitted]
    metrics[RULES] = evaluate_rules(
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
