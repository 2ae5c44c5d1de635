"""bench.tables and bench.report.stats on stores with hand-checked numbers."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from bench.report import stats, tables
from bench.store import Suite
from report_fixtures import make_run, make_suite


def metrics(budget_acc: float, exit_acc: list[float], budget: float = 20.0) -> dict:
    anytime = [{"exit": n + 1, "mmacs": 10.0 * (n + 1), "top1": a, "top5": 99.0}
               for n, a in enumerate(exit_acc)]
    return {"anytime": anytime, "heldout_anytime": anytime,
            "budgeted": [{"budget_mmacs": budget, "accuracy": budget_acc, "mmacs": 19.5,
                          "thresholds": [0.5, -math.inf], "exit_shares": [0.05, 0.95]}],
            "curve": []}


@pytest.fixture
def hand(tmp_path):
    """joint and boostnet, seeds 0 and 1, two exits (10 and 20 MMACs), one budget (20)."""
    values = {("joint", 0): (70.0, [60.0, 71.0]), ("joint", 1): (72.0, [62.0, 73.0]),
              ("boostnet", 0): (73.0, [61.0, 74.0]), ("boostnet", 1): (76.0, [65.0, 77.0])}
    runs = [{"run_id": f"b-{m}-s{s}", "method": m, "seed": s, "mmacs": (10.0, 20.0),
             "budgets": (20.0,), "metrics": metrics(*v)} for (m, s), v in values.items()]
    return make_suite(tmp_path, "hand", runs, name="Hand")


def row(df, method, kind, point):
    hit = df[(df.method == method) & (df.kind == kind) & (df.point == point)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_comparison_mean_std_delta(hand):
    df = tables.comparison(hand)
    assert list(df.columns) == tables.COLUMNS
    assert list(dict.fromkeys(df.method)) == ["joint", "boostnet"]  # baseline first
    j, b = row(df, "joint", "budget", 20.0), row(df, "boostnet", "budget", 20.0)
    assert (j["mean"], b["mean"], j.n) == (71.0, 74.5, 2)
    assert j["std"] == pytest.approx(math.sqrt(2))  # ddof=1: sqrt(((70-71)^2+(72-71)^2)/1)
    assert b["std"] == pytest.approx(math.sqrt(4.5))
    assert b.delta == 3.5 and math.isnan(j.delta)  # no delta for the baseline itself
    assert b.mmacs == 19.5
    e1 = row(df, "boostnet", "exit", 1)
    assert (e1["mean"], e1.delta, e1.mmacs) == (63.0, 2.0, 10.0)


def test_format_terminal(hand):
    text = tables.format_terminal(tables.comparison(hand))
    assert "71.00 ± 1.41" in text and "74.50 ± 2.12 (+3.50)" in text
    assert "exit 2" in text and "20M" in text
    assert "seeds per cell: 2" in text
    assert tables.format_terminal(tables.comparison(hand.parent / "missing")) \
        == "no finished runs yet"


def test_one_seed_has_no_std(tmp_path):
    d = make_suite(tmp_path, "one", [{"run_id": "r", "method": "joint", "seed": 3,
                                      "mmacs": (10.0, 20.0), "budgets": (20.0,),
                                      "metrics": metrics(70.0, [60.0, 71.0])}])
    df = tables.comparison(d)
    assert df["std"].isna().all() and (df.n == 1).all()
    lines = tables.format_terminal(df).splitlines()
    assert lines[lines.index("method    20M") + 2] == "joint   70.00"  # no "±" for one seed


def test_summary_csv_is_the_fallback(hand):
    """Without run folders, the numbers come from summary.csv (same table)."""
    expected = tables.comparison(hand)
    for run in list(hand.iterdir()):
        if run.is_dir():
            shutil.rmtree(run)
    got = tables.comparison(hand)
    assert got[["method", "kind", "point", "mean", "n"]].equals(
        expected[["method", "kind", "point", "mean", "n"]])


def current_ids(hand, *more: str) -> list[str]:
    """The hand suite's run ids (suite.json) and ``more``."""
    return list(Suite(hand).run_ids) + list(more)


def test_partial_runs_are_left_out(hand):
    Suite(hand).write_suite({"name": "Hand"}, current_ids(hand, "b-joint-s2", "b-joint-s3"))
    make_run(hand, "b-joint-s2", method="joint", seed=2, state="running", mmacs=(10.0, 20.0))
    make_run(hand, "b-joint-s3", method="joint", seed=3, state="failed", mmacs=(10.0, 20.0))
    suite = Suite(hand)
    assert row(tables.comparison(suite), "joint", "budget", 20.0).n == 2
    assert (suite.count("done"), suite.count("running"), suite.count("failed")) == (4, 1, 1)
    assert suite.state == "failed" and suite.status_text == "4/6 runs done, 1 failed, 1 running"


def test_total_from_suite_json(hand):
    Suite(hand).write_suite({"name": "Hand"}, current_ids(hand, *[f"r{i}" for i in range(4)]))
    suite = Suite(hand)
    assert suite.total == 8 and suite.state == "partial"  # nothing runs the other four
    assert suite.status_text == "4/8 runs done, none running"


def test_paired_ttest_hand_checked():
    t = stats.paired_ttest([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    # d = 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.464 with 2 df
    assert (t.test, t.n, t.diff) == (stats.TTEST, 3, 2.0)
    assert t.p == pytest.approx(0.0741799, abs=1e-6)
    half = 4.302653 / math.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert (t.low, t.high) == (pytest.approx(2 - half, abs=1e-5), pytest.approx(2 + half, abs=1e-5))
    same = stats.paired_ttest([1.0, 2.0], [1.0, 2.0])
    assert (same.diff, same.p) == (0.0, 1.0)


def test_paired_bootstrap_hand_checked():
    yes, no = np.ones(50, bool), np.zeros(50, bool)
    t = stats.paired_bootstrap(yes, no, n_boot=999)
    assert (t.diff, t.low, t.high, t.n) == (100.0, 100.0, 100.0, 50)
    assert t.p == pytest.approx(1 / 1000)  # no resample is as far from 100 as 0 is
    t = stats.paired_bootstrap(np.array([1, 1, 0, 0], bool), np.array([0, 1, 0, 1], bool))
    assert t.diff == 0.0 and t.p == 1.0
    t = stats.paired_bootstrap(np.r_[yes[:30], no[:20]], np.r_[yes[:20], no[:30]], n_boot=2000)
    assert t.diff == pytest.approx(20.0) and t.low < 20 < t.high and t.p < 0.01


def test_exits_at_follows_the_thresholds():
    # two classes: logits (d, 0) with d = log(c / (1 - c)) give a max softmax of c
    conf = np.array([[0.9, 0.6, 0.6, 0.55],
                     [0.55, 0.8, 0.7, 0.55],
                     [0.55, 0.55, 0.55, 0.55]])
    logits = np.stack([np.log(conf / (1 - conf)), np.zeros_like(conf)], -1).astype(np.float32)
    assert stats.exits_at(logits, [0.65, 0.75, math.inf]).tolist() == [0, 1, 2, 2]
    assert stats.exits_at(logits, [0.95, 0.75]).tolist() == [2, 1, 2, 2]  # last one implied


def test_significance_tests(hand, tmp_path):
    sig = stats.significance(Suite(hand), "joint")
    b = sig[(sig.kind == "budget")].iloc[0]
    assert (b.method, b.test, b.n, b["diff"]) == ("boostnet", stats.TTEST, 2, 3.5)
    # d = 3, 4: mean 3.5, sd 0.7071, t = 7 with 1 df -> p = 0.0903
    assert b.p == pytest.approx(0.090334, abs=1e-5)
    # one seed: bootstrap over images, recomputed from predictions.pt and the thresholds
    d = make_suite(tmp_path, "single", [
        {"run_id": "j", "method": "joint", "seed": 0, "m": 300},
        {"run_id": "b", "method": "boostnet", "seed": 0, "m": 300, "skill": 1.5},
        {"run_id": "v", "method": "boostnet", "label": "boostnet-t1", "seed": 0, "m": 300,
         "skill": 1.5, "predictions": False}])
    suite = Suite(d)
    sig = stats.significance(suite, "joint")
    got = sig[sig.method == "boostnet"]
    assert (got.test == stats.BOOTSTRAP).all() and (got.n == 300).all()
    # the per-image recomputation reproduces metrics.json's accuracies exactly
    cmp = tables.comparison(suite)
    for r in got.itertuples():
        assert r.diff == pytest.approx(row(cmp, "boostnet", r.kind, r.point).delta, abs=1e-4)
    none = sig[sig.method == "boostnet-t1"]
    assert (none.test == "none (one seed, no predictions.pt)").all()


def test_stale_runs_are_counted_and_marked(tmp_path):
    from report_fixtures import CODE

    d = make_suite(tmp_path, "mixed", [
        {"run_id": "j0", "method": "joint", "seed": 0, "m": 40},
        {"run_id": "j1", "method": "joint", "seed": 1, "m": 40, "stale": True},
        {"run_id": "b0", "method": "boostnet", "seed": 0, "m": 40}])
    df = tables.comparison(d, CODE["sha256"])
    assert set(df[df.method == "joint"].stale) == {1}
    assert set(df[df.method == "boostnet"].stale) == {0}
    assert (tables.comparison(d).stale == 0).all()  # without the current code: nothing known
    text = tables.format_terminal(df, ["j1"])
    assert "joint *" in text and "boostnet *" not in text
    assert text.endswith("(stale): j1; `bench run --rerun-stale` trains them again")


def test_the_suite_baseline_and_order_drive_the_table(tmp_path):
    runs = [{"run_id": f"{m}", "method": m, "seed": 0, "m": 40, "skill": s}
            for m, s in (("sequential", 0.8), ("joint", 1.0), ("boostnet", 1.3))]
    d = make_suite(tmp_path, "order", runs, baseline="boostnet")
    df = tables.comparison(d)
    assert list(dict.fromkeys(df.method)) == ["boostnet", "sequential", "joint"]
    assert df[df.method == "boostnet"].delta.isna().all()
    j = row(df, "joint", "exit", 3)
    assert j.delta == pytest.approx(j["mean"] - row(df, "boostnet", "exit", 3)["mean"])
    assert "difference to the baseline boostnet" in tables.format_terminal(df, baseline="boostnet")
    none = make_suite(tmp_path, "none", runs, baseline=None)
    assert tables.comparison(none).delta.isna().all()
