"""metrics.json's content, computed from a run's saved predictions alone (an evaluation
never retrains): anytime accuracy per exit, the budgeted-batch curve and fixed budgets
with thresholds fitted on the held-out split only, every exit rule asked for (``rules``),
and the optional calibration report. Plain arguments in, plain JSON-ready data out: the
suite's options are turned into these arguments by the pipeline, the file is written by
the store (bench.store.rules reads the rule entries back).

Exit rules read only the combined logits F_n (``logits`` of predictions.pt); none needs the
raw head logits f_n, so predictions saved before f_n was (``raw_logits``) evaluate fully.
Thresholds are written as finite numbers (``bench.evaluate.thresholds.finite_thresholds``).

Trustworthy exits (docs/trustworthy-exits.md): every rule entry, and the top level for the
default rule, gets ``anytime_quality`` always and ``risk_control`` where asked; a rule's
probabilities are the softmax of its combined logits and its confidence is its criterion's
score mapped to [0, 1] (``bench.evaluate.trustworthy.rule_inputs``). A block that its data
cannot give (a held-out split under 20 images) is ``{"error": ...}``; the rest stays.
"""
from __future__ import annotations

from bench.evaluate import anytime_quality, risk, risk_validity, trustworthy
from bench.evaluate import criteria as exit_criteria
from bench.evaluate.accuracy import anytime_accuracy, topk_accuracy
from bench.evaluate.budgets import accuracy_at_budgets, budget_curve
from bench.evaluate.calibration import calibration_report
from bench.evaluate.rules import DEFAULT_COMBINER, DEFAULT_CRITERION, combine, evaluate_rules
from bench.evaluate.thresholds import finite_thresholds

RULES = "rules"  # metrics.json's key of the exit-rule entries (bench.evaluate.rules)
ANYTIME_QUALITY, RISK_CONTROL = "anytime_quality", "risk_control"  # trustworthy-exit blocks
ERROR = "error"  # the key of a block its data could not give


def compute_metrics(preds: dict, exit_mmacs: list[float], budgets: list[float],
                    calibration: bool = False, criteria=(DEFAULT_CRITERION,),
                    combiners=(DEFAULT_COMBINER,), global_threshold: bool = False,
                    risk_control: dict | None = None, alphas=()) -> dict:
    """metrics.json from the saved predictions ``{"heldout": {"logits", "targets"}, "test":
    ...}`` (logits [N_exits, M, C]); thresholds are fitted on held-out only.
    ``calibration`` adds post-hoc calibration temperatures (one per exit, fitted on
    held-out) with test ECE and budgeted accuracy before and after (bench.evaluate.calibration).
    ``rules``: one entry per (combiner, criterion) (bench.evaluate.evaluate_rules), with the
    global-threshold fit too where ``global_threshold``; none without a held-out split.
    ``risk_control``: the options of the risk-controlled thresholds (losses, procedures,
    epsilons, delta, grid, repeats; the suite's evaluation.risk_control), None for none;
    ``alphas``: the prediction sets' levels. Bad options raise a ValueError first."""
    check_trust_options(risk_control, alphas)
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
    add_trust(metrics, val_logits, val["targets"], test_logits, test["targets"], exit_mmacs,
              risk_control, alphas)
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


def check_trust_options(risk_control: dict | None, alphas) -> None:
    """A ValueError naming the option, before anything is computed."""
    if risk_control is not None:
        options = dict(risk_control)
        risk.check_options(**{k: options[k] for k in ("losses", "procedures", "epsilons",
                                                      "delta", "grid") if k in options})
        risk_validity.check_repeats(options.get("repeats", risk_validity.DEFAULT_REPEATS))
    trustworthy.check_anytime_options(alphas, anytime_quality.DEFAULT_TAUS)


def add_trust(metrics: dict, val_logits, val_targets, test_logits, test_targets, exit_mmacs,
              risk_control: dict | None, alphas) -> None:
    """The trustworthy-exit blocks of every rule entry and, at the top level, of the default
    rule (the same blocks where the default rule is one of the entries)."""
    combined: dict[str, tuple] = {}  # per combiner: its z on held-out and test, computed once
    default = None
    for entry in metrics[RULES]:
        spec = {"name": entry["combiner"], **entry["combiner_options"]}
        key = repr(sorted(spec.items()))
        if key not in combined:
            combined[key] = (combine(val_logits, spec)[0], combine(test_logits, spec)[0])
        entry.update(rule_trust(*combined[key], val_targets, test_targets, exit_mmacs,
                                entry["criterion"], risk_control, alphas))
        if (entry["combiner"], entry["combiner_options"], entry["criterion"]) == \
                (DEFAULT_COMBINER, {}, DEFAULT_CRITERION):
            default = entry
    if default is None:
        default = rule_trust(val_logits, test_logits, val_targets, test_targets, exit_mmacs,
                             DEFAULT_CRITERION, risk_control, alphas)
    metrics.update({k: default[k] for k in (ANYTIME_QUALITY, RISK_CONTROL) if k in default})


def rule_trust(val_z, test_z, val_targets, test_targets, exit_mmacs, criterion: str,
               risk_control: dict | None, alphas) -> dict:
    """One exit rule's ``anytime_quality`` (always) and ``risk_control`` (where asked), from
    its combined logits z [N_exits, M, C] and its criterion; fitted on held-out only."""
    crit = exit_criteria.create(criterion)
    bounds = crit.bounds(val_z.shape[0], val_z.shape[2])
    heldout = trustworthy.rule_inputs(val_z, crit.score(val_z), bounds)
    tested = trustworthy.rule_inputs(test_z, crit.score(test_z), bounds)
    out = {ANYTIME_QUALITY: recorded(
        trustworthy.anytime_quality_metrics, heldout[0], val_targets, tested[0], test_targets,
        test_confidence=tested[1], alphas=tuple(alphas))}
    if risk_control is not None:
        out[RISK_CONTROL] = recorded(
            trustworthy.risk_control_metrics, heldout[0], val_targets, tested[0], test_targets,
            list(exit_mmacs), heldout_confidence=heldout[1], test_confidence=tested[1],
            **dict(risk_control))
    return out


def recorded(block, *args, **kwargs) -> dict:
    """``block(...)``, or ``{"error": message}`` when the data cannot give it (the options
    were checked before): the other metrics of the run stay."""
    try:
        return block(*args, **kwargs)
    except ValueError as err:
        return {ERROR: str(err)}
