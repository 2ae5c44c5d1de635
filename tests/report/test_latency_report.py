"""The suite page's latency section: runs with a latency.json get accuracy against measured
ms per image beside accuracy against MMACs, and the speed-up table."""
from __future__ import annotations

import pandas as pd

from bench import store
from bench.report import render
from report_fixtures import make_suite

LATENCY = {"run_id": "a", "device": "cpu", "batch_size": 1, "threads": 2,
           "load_before": [1.5, 1.0, 1.0], "images": 200,
           "exits": [{"exit": k + 1, "mmacs": m, "mean_ms": 1.0 + k, "median_ms": 1.0 + k,
                      "p95_ms": 2.0 + k} for k, m in enumerate((1.0, 2.0, 3.0))],
           "budgets": [{"budget_mmacs": 1.5, "mmacs": 1.49, "accuracy": 61.0, "mean_ms": 1.4,
                        "median_ms": 1.3, "p95_ms": 2.9, "speedup": 3.0 / 1.4, "speedup_median": 1.5,
                        "mmacs_ratio": 3.0 / 1.49, "agreement": 1.0,
                        "agreement_saved": 0.995}]}


def test_measured_runs_get_the_section_and_others_do_not(tmp_path):
    results = tmp_path / "results"
    make_suite(results, "timed", [{"run_id": "a", "method": "joint"},
                                  {"run_id": "b", "method": "boostnet"}])
    make_suite(results, "untimed", [{"run_id": "c", "method": "joint"}])
    store.Run(results / "timed" / "a").write_latency(LATENCY)
    render(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "timed" / "index.html").read_text()
    assert 'id="latency"' in page and "Accuracy against measured time" in page
    assert "Accuracy against MMACs" in page and "2.14x / 1.50x" in page and "1.000 / 0.995" in page
    assert "cpu, batch 1, 2 thr, load 1.50" in page
    csv = pd.read_csv(tmp_path / "reports" / "timed" / "latency-tiny3.csv")
    assert list(csv.run) == ["a"] and csv.speedup[0] == LATENCY["budgets"][0]["speedup"]
    untimed = (tmp_path / "reports" / "untimed" / "index.html").read_text()
    assert 'id="latency"' not in untimed


def test_an_unreadable_latency_json_is_left_out(tmp_path, caplog):
    results = tmp_path / "results"
    make_suite(results, "s", [{"run_id": "a", "method": "joint"}])
    (results / "s" / "a" / "latency.json").write_text("{not json")
    render(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "s" / "index.html").read_text()
    assert 'id="latency"' not in page
    assert any("latency.json" in r.getMessage() for r in caplog.records)


def _measurement(runtime, batch, speedup, mean_ms):
    return {**LATENCY, "runtime": runtime, "batch_size": batch,
            "energy": {"available": False, "reason": "no energy counter on cpu"},
            "budgets": [{**LATENCY["budgets"][0], "speedup": speedup, "mean_ms": mean_ms}]}


def test_batch_sizes_runtimes_and_ms_budgets_are_shown(tmp_path):
    results = tmp_path / "results"
    make_suite(results, "timed", [{"run_id": "a", "method": "joint"},
                                  {"run_id": "b", "method": "boostnet"}])
    kept = [_measurement("pytorch", 1, 2.0, 1.4), _measurement("pytorch", 64, 1.5, 0.2),
            _measurement("onnxruntime", 1, 1.25, 0.9)]
    store.Run(results / "timed" / "a").write_latency({**kept[0], "measurements": kept})
    lat = {"runtime": "pytorch", "device": "cpu", "batch_size": 1, "threads": 1,
           "exit_ms": [1.0, 2.0, 3.0]}
    for run_id, acc in (("a", 70.0), ("b", 80.0)):
        r = store.Run(results / "timed" / run_id)
        r.write_metrics({**r.metrics, "budgeted_ms": {
            "requested": [1.5], "latency": lat, "budgets": [
                {"budget_ms": 1.5, "accuracy": acc, "ms": 1.45, "thresholds": [0.5, 0.5, -1]}]}})
    render(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "timed" / "index.html").read_text()
    assert "Speed-up over the full network per batch size" in page
    assert "onnxruntime · cpu, batch 1, 2 thr" in page and "no energy counter on cpu" in page
    assert "Leaderboard at ms budgets" in page and "Accuracy at ms budgets" in page
    batch = pd.read_csv(tmp_path / "reports" / "timed" / "latency-batch-tiny3.csv")
    pt = batch[batch.runtime == "pytorch"].iloc[0]
    assert pt.batch_1 == 2.0 and pt.batch_64 == 1.5
    ranked = pd.read_csv(tmp_path / "reports" / "timed" / "latency-ms-budgets-tiny3.csv")
    assert list(ranked.method) == ["boostnet", "joint"] and list(ranked["rank"]) == [1, 2]
    assert ranked.measured_on[0] == "pytorch · cpu, batch 1, 1 thr"
