"""Trustworthy-exit blocks through ``bench run``: every finished run gets anytime quality,
risk control where the suite asks for it, and a suite that asks for more (another ε, the
blocks of runs evaluated before they existed) re-evaluates finished runs from their saved
predictions without retraining; a block the data cannot give is recorded once."""
import copy
import shutil

import pytest
import yaml

from bench import cli, store
from bench.config import load_suite
from bench.pipeline import plan
from bench.pipeline.metrics import trust_outdated

SUITE = {
    "name": "trust",
    "dataset": {"name": "synthetic", "heldout": 48,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 144,
                            "test_size": 48, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint"],
    "training": {"epochs": 1, "batch_size": 48, "device": "cpu"},
    "budgets": {"fractions": [0.6, 0.9]},
}
RISK = {"losses": ["accuracy_gap"], "procedures": ["crc", "ltt"], "epsilons": [0.1],
        "repeats": 2}
KEPT = ("checkpoint.pt", "history.csv", "predictions.pt", "status.json", "config.json")


def bench_run(tmp_path, suite: dict) -> tuple[int, str]:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    code = cli.main(["run", str(path), "--results", str(tmp_path / "results"), "--no-report",
                     "--quiet"])
    return code, str(path)


def the_run(tmp) -> store.Run:
    (run,) = store.Suite(tmp / "results" / "trust").runs
    return run


def snapshot(run: store.Run) -> dict:
    return {f: (run.file(f).read_bytes(), run.file(f).stat().st_mtime_ns) for f in KEPT}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    assert bench_run(tmp, SUITE)[0] == 0
    return tmp


def test_a_run_gets_anytime_quality_without_asking(finished):
    metrics = the_run(finished).metrics
    assert "risk_control" not in metrics
    assert len(metrics["anytime_quality"]["exits"]) == 3
    assert metrics["rules"][0]["anytime_quality"] == metrics["anytime_quality"]


def test_asking_for_more_reevaluates_without_retraining(finished, tmp_path, capsys):
    tmp = tmp_path / "copy"
    shutil.copytree(finished, tmp)
    run = the_run(tmp)
    old = run.metrics
    for block in [old] + old["rules"]:  # as evaluated before the blocks existed
        del block["anytime_quality"]
    run.write_metrics(old)
    before = snapshot(run)
    suite = copy.deepcopy(SUITE) | {"evaluation": {"risk_control": RISK,
                                                   "prediction_sets": {"alphas": [0.2]}}}
    code, path = bench_run(tmp, suite)
    assert code == 0 and capsys.readouterr().err.count("re-evaluated") == 1
    run = the_run(tmp).refresh()
    assert snapshot(run) == before  # nothing retrained
    rc = run.metrics["risk_control"]
    assert {(r["procedure"], r["epsilon"]) for r in rc["results"]} == {("crc", 0.1),
                                                                         ("ltt", 0.1)}
    assert [p["alpha"] for p in run.metrics["anytime_quality"]["prediction_sets"]] == [0.2]
    (spec,) = load_suite(path).runs
    assert not plan.metrics_outdated(spec, run)
    assert bench_run(tmp, suite)[0] == 0  # the same suite again: nothing to do
    assert "re-evaluated" not in capsys.readouterr().err
    # another ε, δ or number of repeats is more to compute
    for change in ({"epsilons": [0.1, 0.2]}, {"delta": 0.05}, {"repeats": 3}, {"grid": 11}):
        other = copy.deepcopy(suite)
        other["evaluation"]["risk_control"] = {**RISK, **change}
        (spec,) = load_suite(bench_file(tmp, other)).runs
        assert plan.metrics_outdated(spec, run), change
        assert trust_outdated(spec.evaluation, run.metrics), change


def bench_file(tmp, suite: dict) -> str:
    path = tmp / "other.yaml"
    path.write_text(yaml.safe_dump(suite))
    return str(path)


def test_a_small_held_out_split_records_the_error_once(tmp_path, capsys):
    suite = copy.deepcopy(SUITE) | {"evaluation": {"risk_control": RISK,
                                                   "prediction_sets": {}}}
    suite["dataset"]["heldout"] = 12
    code, path = bench_run(tmp_path, suite)
    assert code == 0
    run = the_run(tmp_path)
    assert run.state == "done"
    metrics = run.metrics
    assert metrics["risk_control"] == {
        "error": "the held-out split has 12 images; calibrating needs at least 20"}
    assert "12 images" in metrics["anytime_quality"]["prediction_sets_skipped"]
    assert len(metrics["budgeted"]) == 2 and len(metrics["anytime_quality"]["exits"]) == 3
    capsys.readouterr()
    assert bench_run(tmp_path, suite)[0] == 0
    assert "re-evaluated" not in capsys.readouterr().err  # the error is not retried forever
