"""One real (tiny) run through ``bench run``: predictions with F_n and f_n, metrics under
several exit rules, and re-evaluation of finished runs when a suite asks for more rules,
without retraining."""
import copy
import shutil

import pytest
import torch
import yaml

import methods
from bench import cli, store
from bench.config import load_suite
from bench.pipeline import runner
from bench.store import rules as R

SUITE = {
    "name": "rules",
    "dataset": {"name": "synthetic", "heldout": 48,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 144,
                            "test_size": 48, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint", "boostnet"],
    "training": {"epochs": 1, "batch_size": 48, "device": "cpu"},
    "budgets": {"fractions": [0.6, 0.9]},
    "evaluation": {"criteria": ["max_softmax", "entropy"], "combiners": ["none"]},
}
MORE = {"criteria": ["max_softmax", "entropy", "patience"],
        "combiners": ["none", {"name": "product", "weights": "linear"}, "caching"],
        "global_threshold": True}
KEPT = ("checkpoint.pt", "history.csv", "predictions.pt", "status.json", "config.json")


def bench_run(tmp_path, suite: dict, name="suite.yaml") -> tuple[int, str]:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite))
    code = cli.main(["run", str(path), "--results", str(tmp_path / "results"), "--no-report",
                     "--quiet"])
    return code, str(path)


def labels(run: store.Run) -> list[str]:
    return [R.entry_label(e) for e in run.metrics["rules"]]


def snapshot(run: store.Run) -> dict:
    return {f: (run.file(f).read_bytes(), run.file(f).stat().st_mtime_ns) for f in KEPT}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    code, _ = bench_run(tmp, SUITE)
    assert code == 0
    return tmp


def runs_of(tmp) -> dict[str, store.Run]:
    return {r.method: r for r in store.Suite(tmp / "results" / "rules").runs}


def test_predictions_hold_combined_and_raw_logits(finished):
    runs = runs_of(finished)
    for method, run in runs.items():
        preds = run.load_predictions()
        for split in ("heldout", "test"):
            f, raw = preds[split]["logits"], preds[split]["raw_logits"]
            assert f.dtype == raw.dtype == torch.float16 and f.shape == raw.shape
            assert f.shape[:2] == (3, 48)
            combined = torch.stack(methods.create(method).combine(list(raw.float())))
            # F_n = combine(f_n): exactly for joint, up to float16 rounding for boostnet
            assert torch.allclose(combined, f.float(), atol=2e-2, rtol=1e-2)
        if method == "joint":
            assert torch.equal(preds["test"]["logits"], preds["test"]["raw_logits"])


def test_metrics_hold_every_rule_asked_for(finished):
    for run in runs_of(finished).values():
        assert labels(run) == ["none / max_softmax", "none / entropy"]
        default = run.metrics["rules"][0]
        assert [b["accuracy"] for b in default["budgeted"]] == \
            [b["accuracy"] for b in run.metrics["budgeted"]]


def test_more_rules_reevaluate_finished_runs_without_retraining(finished, tmp_path, capsys):
    tmp = tmp_path / "copy"
    shutil.copytree(finished, tmp)
    before = {m: snapshot(r) for m, r in runs_of(tmp).items()}
    old_metrics = {m: r.metrics for m, r in runs_of(tmp).items()}
    suite = copy.deepcopy(SUITE) | {"evaluation": MORE}
    code, path = bench_run(tmp, suite)
    assert code == 0
    assert capsys.readouterr().err.count("re-evaluated from its saved predictions") == 2
    for method, run in runs_of(tmp).items():
        assert snapshot(run) == before[method]  # nothing retrained or rewritten
        assert labels(run) == [
            "none / max_softmax", "none / entropy", "none / patience",
            "product(weights=linear) / max_softmax", "product(weights=linear) / entropy",
            "product(weights=linear) / patience", "caching / max_softmax",
            "caching / entropy", "caching / patience"]
        assert all(len(e["budgeted_global"]) == 2 for e in run.metrics["rules"])
        for key in ("anytime", "budgeted", "curve"):  # the default rule, unchanged
            assert run.metrics[key] == old_metrics[method][key]
        spec = next(s for s in load_suite(path).runs if s.run_id == run.run_id)
        assert not runner.metrics_outdated(spec, run.refresh())
    # the same suite again: nothing left to evaluate
    assert bench_run(tmp, suite)[0] == 0
    assert "re-evaluated" not in capsys.readouterr().err


def test_fewer_rules_keep_what_was_computed(finished, tmp_path):
    tmp = tmp_path / "copy"
    shutil.copytree(finished, tmp)
    suite = copy.deepcopy(SUITE) | {"evaluation": {"criteria": ["margin"]}}
    assert bench_run(tmp, suite)[0] == 0
    for run in runs_of(tmp).values():
        assert labels(run) == ["none / margin", "none / max_softmax", "none / entropy"]


def test_old_predictions_and_stale_runs_are_reevaluated(finished, tmp_path):
    tmp = tmp_path / "copy"
    shutil.copytree(finished, tmp)
    run = runs_of(tmp)["boostnet"]
    preds = run.load_predictions()
    for split in preds.values():
        del split["raw_logits"]  # as saved before f_n was kept
    run.save_predictions(preds)
    run.set_status("done", epoch=1, epochs=1, fingerprint="0" * 64)  # made by other code
    suite = copy.deepcopy(SUITE) | {"evaluation": {"criteria": ["margin"],
                                                   "combiners": ["caching"]}}
    assert bench_run(tmp, suite)[0] == 0
    run = runs_of(tmp)["boostnet"]
    assert run.is_stale("not-this") and run.fingerprint == "0" * 64  # still stale, kept
    assert labels(run)[0] == "caching / margin"
