"""budgets.ms: thresholds fitted on the held-out split with each exit's measured latency as
its cost; bench run measures the latency first where it is missing, says which command to
run where it cannot, and names budgets outside the exits' latency range."""
import json
import sys
from pathlib import Path

import pytest
import torch

from bench import cli, evaluate, store
from bench.config import load_suite
from bench.pipeline import ms_budgets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/run_fixtures.py
from run_fixtures import finished_run, suite_file  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ms")
    return folder, finished_run(folder)


def _run(folder, *sets):
    args = ["run", str(suite_file(folder)), "--results", str(folder / "results"),
            "--no-report", "--quiet"]
    for s in sets:
        args += ["--set", s]
    return cli.main(args)


def _section(run):
    return json.loads((run / "metrics.json").read_text()).get("budgeted_ms")


def test_a_missing_measurement_is_taken_in_bench_run_and_the_fit_uses_it(trained, capsys):
    folder, run = trained
    code = _run(folder, "budgets.ms=[1.0e-6]", "budgets.latency.batch_size=4",
                "budgets.latency.images=16")
    assert code == 0  # the bad budget is said and recorded; the run stays finished
    err = capsys.readouterr().err
    assert "measuring the latency of every exit for budgets.ms (pytorch on cpu, batch size " \
           "4, 1 thread(s))" in err
    assert f"python -m bench latency {run} --device cpu --batch-sizes 4 --threads 1 " \
           "--runtime pytorch --images 16" in err
    latency = store.Run(run).latency
    (m,) = [m for m in latency["measurements"] if m["batch_size"] == 4]
    exit_ms = [e["mean_ms"] for e in m["exits"]]
    section = _section(run)
    assert "budgets.ms[0] = 1e-06 ms is below exit 1's measured latency" in section["error"]
    assert f"exit 3 (the last) {exit_ms[-1]:.4g} ms" in section["error"]
    assert "budgets" not in section
    # ms budgets inside the measured range: fitted without measuring again
    budgets = [exit_ms[0] + f * (exit_ms[-1] - exit_ms[0]) for f in (0.3, 0.7)]
    assert _run(folder, f"budgets.ms={budgets}", "budgets.latency.batch_size=4",
                "budgets.latency.images=16") == 0
    assert "measuring" not in capsys.readouterr().err
    section = _section(run)
    assert section["latency"]["exit_ms"] == exit_ms and section["latency"]["batch_size"] == 4
    preds = store.Run(run).load_predictions()
    want = evaluate.accuracy_at_budgets(
        preds["heldout"]["logits"].float(), preds["heldout"]["targets"],
        preds["test"]["logits"].float(), preds["test"]["targets"], exit_ms, budgets)
    for got, w in zip(section["budgets"], want):
        assert got["accuracy"] == w["accuracy"] and got["ms"] == pytest.approx(w["flops"])
        assert got["heldout_ms"] <= got["budget_ms"] + 1e-9  # met on held-out
        assert got["thresholds"] == evaluate.finite_thresholds(w["thresholds"])
    # unchanged suite, unchanged measurement: nothing to do
    spec = load_suite(suite_file(folder), [f"budgets.ms={budgets}",
                                           "budgets.latency.batch_size=4"]).runs[0]
    assert not ms_budgets.outdated(spec, store.Run(run))


def test_without_the_device_bench_run_says_which_command_measures_it(trained, capsys,
                                                                      monkeypatch):
    folder, run = trained
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _run(folder, "budgets.ms=[1.0]", "budgets.latency.device=cuda",
                "budgets.latency.batch_size=64") == 0
    err = capsys.readouterr().err
    assert f"run python -m bench latency {run} --device cuda --batch-sizes 64 --threads 1 " \
           "--runtime pytorch where it has, then bench run again" in err
    assert _section(run)["latency"]["device"] != "cuda"  # nothing recorded for cuda


def test_ms_budgets_are_not_part_of_the_run_id(trained):
    folder, _ = trained
    plain = load_suite(suite_file(folder)).runs
    timed = load_suite(suite_file(folder), ["budgets.ms=[0.5, 1.0]",
                                            "budgets.latency.batch_size=8"]).runs
    assert [r.run_id for r in plain] == [r.run_id for r in timed]
    assert timed[0].budgets_ms == (0.5, 1.0) and timed[0].latency.batch_size == 8
    assert plain[0].budgets_ms == () and plain[0].latency is None
    assert "budgets_ms" not in timed[0].config


def test_ms_beside_fractions_or_alone_and_bad_values_are_named(tmp_path, capsys):
    path = suite_file(tmp_path)
    only_ms = load_suite(path, ["budgets.fractions=null", "budgets.ms=[2.0]"]).runs[0]
    assert only_ms.budgets_mmacs == () and only_ms.budgets_ms == (2.0,)
    assert cli.main(["run", str(path), "--dry-run", "--set", "budgets.ms=[0]"]) == 2
    assert "budgets.ms" in capsys.readouterr().err
    assert cli.main(["run", str(path), "--dry-run", "--set",
                     "budgets.latency.runtime=tflite"]) == 2
    assert "budgets.latency.runtime" in capsys.readouterr().err


def test_a_run_that_trains_gets_its_latency_measured_after_training(tmp_path, capsys):
    assert _run(tmp_path, "budgets.ms=[1.0e6]", "budgets.latency.images=8") == 0
    (run,) = [p for p in (tmp_path / "results" / "tiny").iterdir() if "--" in p.name]
    assert store.Run(run).status["state"] == "done"
    assert store.Run(run).latency["images"] == 8
    assert "above the last exit's measured latency" in _section(run)["error"]
    assert "budgets.ms[0] = 1000000.0 ms is above" in capsys.readouterr().err
