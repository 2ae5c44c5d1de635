"""The trustworthy-exit blocks of metrics.json, as plain JSON-ready dicts, from the held-out
and test per-exit probabilities [N, L, C] and the per-exit cumulative MMACs.

Honest protocol: every fit (risk-controlled thresholds, the validity diagnostic, conformal
quantiles) is called with held-out tensors only; the test split is only measured, with what
was fitted already fixed.
"""
import torch

from bench.evaluate import anytime_quality as aq
from bench.evaluate import conformal
from bench.evaluate.exit_probs import (MIN_HELDOUT, check_exit_mmacs, check_heldout_size,
                                       check_probs, confidences)
from bench.evaluate.risk import (DEFAULT_DELTA, DEFAULT_EPSILONS, DEFAULT_GRID, LOSS_BOUNDS,
                                 PROCEDURES, check_options, measure_threshold, risk_control)
from bench.evaluate.risk_validity import (DEFAULT_REPEATS, check_repeats,
                                          validity_diagnostic)


def trustworthy_metrics(heldout_probs, heldout_labels, test_probs, test_labels, exit_mmacs, *,
                        heldout_confidence=None, test_confidence=None,
                        losses=tuple(LOSS_BOUNDS), procedures=PROCEDURES,
                        epsilons=DEFAULT_EPSILONS, delta=DEFAULT_DELTA, grid=DEFAULT_GRID,
                        repeats=DEFAULT_REPEATS, seed=0, alphas=conformal.DEFAULT_ALPHAS,
                        taus=aq.DEFAULT_TAUS):
    """{"risk_control": ..., "anytime_quality": ...}; every argument is checked before any
    work (the anytime options here, the rest by risk_control_metrics, which runs first)."""
    check_anytime_options(alphas, taus)
    splits = (heldout_probs, heldout_labels, test_probs, test_labels)
    return {"risk_control": risk_control_metrics(
                *splits, exit_mmacs, heldout_confidence=heldout_confidence,
                test_confidence=test_confidence, losses=losses, procedures=procedures,
                epsilons=epsilons, delta=delta, grid=grid, repeats=repeats, seed=seed),
            "anytime_quality": anytime_quality_metrics(
                *splits, test_confidence=test_confidence, alphas=alphas, taus=taus)}


def risk_control_metrics(heldout_probs, heldout_labels, test_probs, test_labels, exit_mmacs,
                         *, heldout_confidence=None, test_confidence=None,
                         losses=tuple(LOSS_BOUNDS), procedures=PROCEDURES,
                         epsilons=DEFAULT_EPSILONS, delta=DEFAULT_DELTA, grid=DEFAULT_GRID,
                         repeats=DEFAULT_REPEATS, seed=0):
    """The ``risk_control`` block alone; a ValueError (naming what is wrong) for bad options,
    splits that do not match or a held-out split under MIN_HELDOUT images."""
    check_options(losses=losses, procedures=procedures, epsilons=epsilons, delta=delta,
                  grid=grid)
    check_repeats(repeats)
    heldout, test = check_splits(heldout_probs, heldout_labels, test_probs, test_labels)
    check_heldout_size(len(heldout[1]))
    check_exit_mmacs(exit_mmacs, test[0].shape[1])
    heldout_c = confidences(heldout[0], heldout_confidence, "held-out")
    test_c = confidences(test[0], test_confidence, "test")
    return risk_control_block(*heldout, heldout_c, *test, test_c, exit_mmacs, losses=losses,
                              procedures=procedures, epsilons=epsilons, delta=delta,
                              grid=grid, repeats=repeats, seed=seed)


def anytime_quality_metrics(heldout_probs, heldout_labels, test_probs, test_labels, *,
                            test_confidence=None, alphas=conformal.DEFAULT_ALPHAS,
                            taus=aq.DEFAULT_TAUS):
    """The ``anytime_quality`` block alone. Everything but the prediction sets comes from
    the test split; the sets are skipped, with the reason, under MIN_HELDOUT held-out images."""
    check_anytime_options(alphas, taus)
    heldout, test = check_splits(heldout_probs, heldout_labels, test_probs, test_labels)
    test_c = confidences(test[0], test_confidence, "test")
    return anytime_quality_block(*heldout, *test, test_c, alphas=alphas, taus=taus)


def check_anytime_options(alphas, taus):
    aq.check_taus(taus)
    for alpha in alphas:
        conformal.check_alpha(alpha)


def check_splits(heldout_probs, heldout_labels, test_probs, test_labels):
    """((probs, labels) held-out, (probs, labels) test), checked, with the same exits and
    classes."""
    heldout = check_probs(heldout_probs, heldout_labels, "held-out")
    test = check_probs(test_probs, test_labels, "test")
    if heldout[0].shape[1:] != test[0].shape[1:]:
        raise ValueError(f"held-out and test probs must have the same exits and classes, got "
                         f"{list(heldout[0].shape[1:])} and {list(test[0].shape[1:])}")
    return heldout, test


def rule_inputs(z, scores, bounds):
    """An exit rule's (probs [N, L, C], confidence [N, L]), both float64, from its combined
    logits z [L, N, C] (softmax(z_l) = p_l; -inf entries are classes of probability 0) and
    its criterion's scores [L, N] (bench.evaluate.criteria; the exit layout, exits first).

    Risk control and AUROC want a confidence in [0, 1], and only max softmax's scores are
    one: each score s is mapped to (s - low) / (high - low) with the criterion's registered
    ``bounds`` (low, high), which hold every score (entropy's [-ln C, 0], patience's [0, L]).
    The map keeps the order of the scores, so the rule exits the same images in the same
    order; max softmax's bounds (0, 1) leave it unchanged. The clamp only absorbs rounding."""
    probs = torch.softmax(torch.as_tensor(z).double(), dim=-1).transpose(0, 1)
    low, high = (float(b) for b in bounds)
    if not high > low:
        raise ValueError(f"a criterion's bounds must have low < high, got {bounds!r}")
    confidence = ((torch.as_tensor(scores).double() - low) / (high - low)).clamp(0.0, 1.0)
    return probs, confidence.transpose(0, 1)


def fit_thresholds(heldout_probs, heldout_labels, heldout_confidence, *, losses, procedures,
                   epsilons, delta, grid):
    """One RiskControl per (loss, procedure, ε), fitted on the held-out split."""
    return [risk_control(heldout_probs, heldout_labels, loss=loss, epsilon=epsilon,
                         delta=delta, procedure=procedure, grid=grid,
                         confidence=heldout_confidence)
            for loss in losses for procedure in procedures for epsilon in epsilons]


def risk_control_block(heldout_probs, heldout_labels, heldout_confidence, test_probs,
                       test_labels, test_confidence, exit_mmacs, *, losses, procedures,
                       epsilons, delta, grid, repeats, seed):
    """Per (loss, procedure, ε): λ̂, held-out and test risk, whether the test risk exceeds ε,
    test top-1 (percent), mean MMACs per test image, test share per exit; and the validity
    diagnostic on held-out halves."""
    options = dict(losses=losses, procedures=procedures, epsilons=epsilons, delta=delta,
                   grid=grid)
    fits = fit_thresholds(heldout_probs, heldout_labels, heldout_confidence, **options)
    results = []
    for fit in fits:  # the thresholds are fixed; the test split is only measured
        tested = measure_threshold(fit, test_probs, test_labels, exit_mmacs=exit_mmacs,
                         confidence=test_confidence)
        results.append({"loss": fit.loss, "procedure": fit.procedure, "epsilon": fit.epsilon,
                        "threshold": fit.threshold,
                        "heldout_risk": fit.risks[fit.index].item(),
                        "test_risk": tested["risk"], "exceeded": tested["risk"] > fit.epsilon,
                        "top1": tested["top1"], "mmacs": tested["mmacs"],
                        "exit_shares": tested["exit_shares"]})
    return {"delta": float(delta), "grid": grid, "heldout_images": len(heldout_labels),
            "test_images": len(test_labels), "results": results,
            "validity": validity_block(heldout_probs, heldout_labels, heldout_confidence,
                                       repeats=repeats, seed=seed, **options)}


def validity_block(heldout_probs, heldout_labels, heldout_confidence, *, repeats, seed,
                   **options):
    """The validity diagnostic's rows, or none with the reason when the halves are too small."""
    block = {"repeats": repeats, "seed": seed}
    half = len(heldout_labels) // 2
    if half < MIN_HELDOUT:
        return {**block, "rows": [], "skipped": f"half of the held-out split has {half} "
                                                f"images; the diagnostic needs {MIN_HELDOUT}"}
    rows = validity_diagnostic(heldout_probs, heldout_labels, repeats=repeats, seed=seed,
                               confidence=heldout_confidence, **options)
    return {**block, "rows": rows}


def anytime_quality_block(heldout_probs, heldout_labels, test_probs, test_labels,
                          test_confidence, *, alphas, taus):
    """Monotonicity violations per τ, correctness decreases, per-exit AUROC and ECE (percent)
    on test; prediction sets per α with q̂ from the held-out split (none, and the reason in
    ``prediction_sets_skipped``, when it has under MIN_HELDOUT images)."""
    shares = aq.monotonicity(test_probs, test_labels, taus)
    auroc = aq.failure_auroc(test_probs, test_labels, test_confidence)
    ece = aq.exit_ece(test_probs, test_labels)
    block = {"monotonicity": [{"tau": tau, "violating_share": s} for tau, s in shares.items()],
             "correctness_decreases": aq.correctness_decreases(test_probs, test_labels),
             "exits": [{"exit": l + 1, "auroc": a, "ece_percent": e}
                       for l, (a, e) in enumerate(zip(auroc, ece))],
             "prediction_sets": []}
    if alphas and len(heldout_labels) < MIN_HELDOUT:
        return {**block, "prediction_sets_skipped": f"the held-out split has "
                f"{len(heldout_labels)} images; the sets need {MIN_HELDOUT}"}
    block["prediction_sets"] = [prediction_set_block(heldout_probs, heldout_labels, test_probs,
                                                     test_labels, alpha) for alpha in alphas]
    return block


def prediction_set_block(heldout_probs, heldout_labels, test_probs, test_labels, alpha):
    """Coverage and mean size per exit of C_l and of the nested C̃_l (plus its empty share)."""
    qhat = conformal.quantiles(heldout_probs, heldout_labels, alpha)  # held-out only
    sets = conformal.prediction_sets(test_probs, qhat)
    plain = conformal.set_quality(sets, test_labels)
    nested = conformal.set_quality(conformal.nested(sets), test_labels)
    return {"alpha": float(alpha), "exits": [
        {"exit": l + 1, "qhat": qhat[l].item(), "coverage": plain["coverage"][l],
         "mean_size": plain["mean_size"][l], "nested_coverage": nested["coverage"][l],
         "nested_mean_size": nested["mean_size"][l],
         "nested_empty_share": nested["empty_share"][l]} for l in range(len(qhat))]}
