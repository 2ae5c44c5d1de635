"""The metrics.json blocks: JSON-ready, consistent with the functions they are built from,
fitted on the held-out split only, bad options refused before any work."""
import json

import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import anytime_quality as aq
from bench.evaluate import conformal, risk, trustworthy

MMACS = [1.0, 2.5, 4.0]
SMALL = dict(losses=("consistency", "brier_gap"), procedures=("crc", "ltt"),
             epsilons=(0.05, 0.2), repeats=3, alphas=(0.1,))


def split(n, seed, exits=3, classes=6):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=g)
    z = torch.randn(n, exits, classes, generator=g) * 1.5
    z[torch.arange(n), :, y] += torch.linspace(0.5, 3.0, exits)
    return z.softmax(-1).double(), y


HELDOUT, TEST = split(300, 0), split(400, 1)


def test_defaults_give_every_row_and_plain_json():
    out = trustworthy.trustworthy_metrics(*split(60, 0), *split(50, 1), MMACS)
    text = json.dumps(out, allow_nan=False)  # plain types, no NaN
    assert json.loads(text) == out
    rc, aqb = out["risk_control"], out["anytime_quality"]
    assert len(rc["results"]) == 3 * 3 * 6 and len(rc["validity"]["rows"]) == 3 * 3 * 6
    assert (rc["delta"], rc["grid"], rc["heldout_images"], rc["test_images"]) == (0.1, 101, 60,
                                                                                  50)
    assert rc["validity"]["repeats"] == 100 and "skipped" not in rc["validity"]
    assert [m["tau"] for m in aqb["monotonicity"]] == list(aq.DEFAULT_TAUS)
    assert [p["alpha"] for p in aqb["prediction_sets"]] == [0.05, 0.1]
    assert [e["exit"] for e in aqb["exits"]] == [1, 2, 3]


def test_risk_rows_are_the_fit_on_held_out_measured_on_test():
    out = trustworthy.trustworthy_metrics(*HELDOUT, *TEST, MMACS, **SMALL)["risk_control"]
    assert len(out["results"]) == 2 * 2 * 2
    for row in out["results"]:
        fit = risk.risk_control(*HELDOUT, loss=row["loss"], epsilon=row["epsilon"],
                                procedure=row["procedure"])
        tested = risk.measure_threshold(fit, *TEST, exit_mmacs=MMACS)
        assert row == {"loss": fit.loss, "procedure": fit.procedure, "epsilon": fit.epsilon,
                       "threshold": fit.threshold, "heldout_risk": fit.risks[fit.index].item(),
                       "test_risk": tested["risk"], "exceeded": tested["risk"] > fit.epsilon,
                       "top1": tested["top1"], "mmacs": tested["mmacs"],
                       "exit_shares": tested["exit_shares"]}
    assert out["validity"]["rows"] == ev.validity_diagnostic(
        *HELDOUT, losses=SMALL["losses"], procedures=SMALL["procedures"],
        epsilons=SMALL["epsilons"], repeats=3, seed=0)


def test_anytime_block_is_built_from_the_functions():
    out = trustworthy.trustworthy_metrics(*HELDOUT, *TEST, MMACS, **SMALL)["anytime_quality"]
    shares = aq.monotonicity(*TEST)
    assert out["monotonicity"] == [{"tau": t, "violating_share": s} for t, s in shares.items()]
    assert out["correctness_decreases"] == aq.correctness_decreases(*TEST)
    assert [e["auroc"] for e in out["exits"]] == aq.failure_auroc(*TEST)
    assert [e["ece_percent"] for e in out["exits"]] == aq.exit_ece(*TEST)
    (sets,) = out["prediction_sets"]
    qhat = conformal.quantiles(*HELDOUT, 0.1)
    plain = conformal.set_quality(conformal.prediction_sets(TEST[0], qhat), TEST[1])
    nested = conformal.set_quality(conformal.nested(conformal.prediction_sets(TEST[0], qhat)),
                                   TEST[1])
    assert sets["alpha"] == 0.1
    assert [e["qhat"] for e in sets["exits"]] == qhat.tolist()
    assert [e["coverage"] for e in sets["exits"]] == plain["coverage"]
    assert [e["mean_size"] for e in sets["exits"]] == plain["mean_size"]
    assert [e["nested_coverage"] for e in sets["exits"]] == nested["coverage"]
    assert [e["nested_mean_size"] for e in sets["exits"]] == nested["mean_size"]
    assert [e["nested_empty_share"] for e in sets["exits"]] == nested["empty_share"]


def is_heldout(probs):
    return torch.equal(torch.as_tensor(probs).double(), HELDOUT[0])


def test_every_fit_receives_held_out_tensors_only(monkeypatch):
    seen = []

    def spy(name, fn):
        def wrapped(probs, labels, *args, **kwargs):
            seen.append((name, is_heldout(probs)))
            return fn(probs, labels, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(trustworthy, "risk_control", spy("risk", risk.risk_control))
    monkeypatch.setattr(trustworthy, "validity_diagnostic",
                        spy("validity", ev.validity_diagnostic))
    monkeypatch.setattr(conformal, "quantiles", spy("conformal", conformal.quantiles))
    trustworthy.trustworthy_metrics(*HELDOUT, *TEST, MMACS, **SMALL)
    assert {name for name, _ in seen} == {"risk", "validity", "conformal"}
    assert all(ok for _, ok in seen), seen


def fitted(out):
    rc = out["risk_control"]
    return ([(r["threshold"], r["heldout_risk"]) for r in rc["results"]], rc["validity"],
            [[e["qhat"] for e in p["exits"]] for p in out["anytime_quality"]["prediction_sets"]])


def test_changing_the_test_split_changes_no_fitted_value():
    a = trustworthy.trustworthy_metrics(*HELDOUT, *TEST, MMACS, **SMALL)
    other = split(400, 2)
    b = trustworthy.trustworthy_metrics(*HELDOUT, *other, MMACS, **SMALL)
    assert fitted(a) == fitted(b)
    assert [r["test_risk"] for r in a["risk_control"]["results"]] != \
        [r["test_risk"] for r in b["risk_control"]["results"]]
    c = trustworthy.trustworthy_metrics(*split(300, 3), *TEST, MMACS, **SMALL)
    assert fitted(a) != fitted(c)  # the held-out split is what they come from


def test_the_validity_diagnostic_is_skipped_with_its_reason_on_a_small_held_out_split():
    out = trustworthy.trustworthy_metrics(*split(30, 0), *TEST, MMACS, **SMALL)
    validity = out["risk_control"]["validity"]
    assert validity["rows"] == [] and validity["skipped"] == (
        "half of the held-out split has 15 images; the diagnostic needs 20")
    assert len(out["risk_control"]["results"]) == 8  # the rest is computed


def test_the_rules_confidence_is_used_on_both_splits():
    conf_h, conf_t = HELDOUT[0][..., 0], TEST[0][..., 0]  # class 0's probability as confidence
    out = trustworthy.trustworthy_metrics(*HELDOUT, *TEST, MMACS, heldout_confidence=conf_h,
                                          test_confidence=conf_t, **SMALL)
    row = out["risk_control"]["results"][0]
    fit = risk.risk_control(*HELDOUT, loss=row["loss"], epsilon=row["epsilon"],
                            procedure=row["procedure"], confidence=conf_h)
    assert row["threshold"] == fit.threshold
    assert row["test_risk"] == risk.measure_threshold(fit, *TEST, exit_mmacs=MMACS,
                                                      confidence=conf_t)["risk"]
    assert [e["auroc"] for e in out["anytime_quality"]["exits"]] == \
        aq.failure_auroc(*TEST, conf_t)


@pytest.mark.parametrize("kwargs, message", [
    ({"epsilons": (0.1, 0.0)}, "epsilon must be in (0, 1), got 0.0"),
    ({"delta": 1.0}, "delta must be in (0, 1), got 1.0"),
    ({"losses": ("consistency", "nll")}, "loss must be one of"),
    ({"procedures": ("bonferroni",)}, "procedure must be one of"),
    ({"grid": 1}, "grid must be an integer >= 2"),
    ({"repeats": 0}, "repeats must be an integer >= 1"),
    ({"alphas": (0.1, 1.0)}, "alpha must be in (0, 1)"),
    ({"taus": (-0.5,)}, "taus must be tolerances >= 0"),
])
def test_bad_options_are_refused_before_any_fit(monkeypatch, kwargs, message):
    calls = []
    monkeypatch.setattr(trustworthy, "risk_control", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError) as err:
        trustworthy.trustworthy_metrics(*HELDOUT, *TEST, MMACS, **{**SMALL, **kwargs})
    assert message in str(err.value) and calls == []


@pytest.mark.parametrize("heldout, test, mmacs, message", [
    (split(19, 0), TEST, MMACS, "the held-out split has 19 images"),
    (HELDOUT, split(50, 1, exits=2), [1.0, 2.0], "the same exits and classes"),
    (HELDOUT, split(50, 1, classes=5), MMACS, "the same exits and classes"),
    (HELDOUT, TEST, [1.0, 2.0], "one cost per exit (3)"),
])
def test_bad_splits_are_refused(heldout, test, mmacs, message):
    with pytest.raises(ValueError) as err:
        trustworthy.trustworthy_metrics(*heldout, *test, mmacs, **SMALL)
    assert message in str(err.value)


def test_package_export():
    assert ev.trustworthy_metrics is trustworthy.trustworthy_metrics
