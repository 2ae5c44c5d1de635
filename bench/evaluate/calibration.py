"""Post-hoc calibration temperature scaling of each exit (Guo et al. 2017), an evaluation option.

The *calibration temperature* T_n divides exit n's logits after training: softmax(F_n / T_n).
It is fitted on the held-out split by minimizing the NLL and never changes the argmax (so
anytime top-1 is unchanged), but it changes the confidences and therefore which samples leave
at which exit in budgeted batch classification.

It is NOT BoostNet's ensemble temperature t_n (F_n = t_n * F_{n-1} + f_n), which is part of the
trained model and of ``methods.boostnet``; the calibration temperature only rescales the
saved F_n. Every name here says "calibration temperature" to keep the two apart.
"""
import math

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from bench.evaluate.budgets import accuracy_at_budgets
from bench.evaluate.criteria import confidences
from bench.evaluate.inputs import as_targets, stack_logits

LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))  # search range of log T


def _fit_one(logits, targets):
    """Calibration temperature of one exit: argmin_T NLL(softmax(F_n / T), y), searched on log T."""
    nll = lambda log_t: F.cross_entropy(logits / math.exp(log_t), targets).item()
    res = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return math.exp(res.x)


def fit_temperatures(val_preds, val_targets):
    """One calibration temperature per exit, fitted on the held-out split only."""
    preds, targets = stack_logits(val_preds), as_targets(val_targets)
    return [_fit_one(p, targets) for p in preds]


def apply_temperatures(preds, temps):
    """F_n / T_n for every exit, [N, M, C] as stack_logits gives it (calibration
    temperatures, not BoostNet's t_n)."""
    preds = stack_logits(preds)
    return preds / torch.as_tensor(temps, dtype=preds.dtype)[:, None, None]


def expected_calibration_error(preds, targets, n_bins=15):
    """ECE of every exit, in PERCENT: sum_b |B_b|/M * |accuracy(B_b) - mean confidence(B_b)|.

    Confidence = max softmax of F_n; n_bins equal-width bins over (0, 1] (Guo et al. 2017).
    """
    conf, pred = confidences(preds)
    correct = (pred == as_targets(targets)[None]).double()
    bins = (conf.double() * n_bins).ceil().clamp(1, n_bins).long() - 1  # bin (i/B, (i+1)/B]
    out = []
    for b, c, ok in zip(bins, conf.double(), correct):
        # |B_b| * |acc(B_b) - conf(B_b)| = |sum of correct - sum of confidences| in bin b
        gap = (torch.bincount(b, weights=ok, minlength=n_bins)
               - torch.bincount(b, weights=c, minlength=n_bins)).abs()
        out.append(100.0 * gap.sum().item() / max(len(c), 1))
    return out


def calibration_report(val_preds, val_targets, test_preds, test_targets, exit_flops, budgets):
    """Calibration temperatures (fit on held-out), test ECE and budgeted test accuracy before/after.

    Budgeted results after calibration refit the thresholds on the calibrated held-out logits.
    """
    temps = fit_temperatures(val_preds, val_targets)
    val_cal, test_cal = apply_temperatures(val_preds, temps), apply_temperatures(test_preds, temps)
    return {
        "calibration_temperatures": temps,
        "ece_unit": "percent",
        "ece_before": expected_calibration_error(test_preds, test_targets),
        "ece_after": expected_calibration_error(test_cal, test_targets),
        "budgeted_before": accuracy_at_budgets(val_preds, val_targets, test_preds, test_targets,
                                               exit_flops, budgets),
        "budgeted_after": accuracy_at_budgets(val_cal, val_targets, test_cal, test_targets,
                                              exit_flops, budgets),
    }
