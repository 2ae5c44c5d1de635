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
