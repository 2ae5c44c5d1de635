"""The leaderboard page rendered from fixture stores written through the store's writer:
the right numbers in the right cells, significance per rule, training cost, published
numbers only where the protocol matches."""
from __future__ import annotations

import math
import statistics
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench import evaluate
from bench.report import render
from bench.report import stats
from bench.store import Suite
from bench.store import rules as R
from report_fixtures import make_run, make_suite

RULES = {"criteria": ["max_softmax", "entropy"], "combiners": ["none", "product"],
         "global_threshold": True}
EVALUATION = {"calibration": False, "criteria": RULES["criteria"],
              "combiners": [{"name": "none"}, {"name": "product"}], "global_threshold": True}
SKILL = {"joint": 1.0, "boostnet": 1.3, "sequential": 0.8}
SECONDS = {0: [10.0, 20.0, 30.0], 1: [20.0, 20.0, 20.0], 2: [30.0, 30.0, 30.0]}


def training(seed: int) -> dict:
    """training.json as the trainer writes it (docs/results-format.md), one stage."""
    passes = {"forward": 1.0, "backward": 1.0, "second_order": 0.0, "optimizer_steps": 1,
              "backward_through": "model"}
    return {"method": "joint", "batch_size": 64, "world_size": 1, "device": "cpu",
            "memory_measure": "rss", "post_training": None,
            "stages": [{"stage": 1, "name": "joint", "epochs": 3, "trains": "all",
                        "frozen_bn": "eval", "active_exits": [1, 2, 3],
                        "trainable_exits": [1, 2, 3], "passes_per_step": passes}],
            "epochs": [{"epoch": e + 1, "stage": 1, "steps": 10, "train_seconds": sec,
                        "eval_seconds": 0.5, "peak_memory_mib": 100.0 + 10 * seed}
                       for e, sec in enumerate(SECONDS[seed])]}


def runs(seeds, m=200):
    return [{"run_id": f"tiny3-{method}-s{seed}", "method": method, "seed": seed,
             "skill": skill, "m": m, "rules": RULES, "evaluation": EVALUATION,
             "training": training(seed) if method != "sequential" else None}
            for seed in seeds for method, skill in SKILL.items()]


class Tables(HTMLParser):
    """Every <table> of a page as {section id: [[cell text, ...], ...]} (header row first)."""

    def __init__(self, html: str):
        super().__init__()
        self.tables, self.section, self.row, self.cell = {}, None, None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "id" in attrs:
            self.section = attrs["id"]
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables.setdefault(self.section, []).append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def keyed(table: list[list[str]], width: int = 2) -> dict[tuple, dict[str, str]]:
    """Rows keyed by their first ``width`` cells, each a {column: cell} mapping."""
    header = table[0]
    return {tuple(r[:width]): dict(zip(header, r)) for r in table[1:]}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    make_suite(root / "results", "lb", runs((0, 1, 2)), name="Leaderboard suite",
               evaluation=EVALUATION)
    make_suite(root / "results", "one", runs((0,), m=400), name="One seed",
               evaluation=EVALUATION)
    render(root / "results", root / "reports")
    return root


def values(root, suite: str, method: str, rule: str, fit_key: str, budget: float) -> dict:
    """seed -> test top-1 of one rule at one budget, read from each run's metrics.json."""
    out = {}
    for run in Suite(root / "results" / suite).runs_of("tiny3", method):
        entry = next(e for e in run.metrics["rules"] if R.entry_label(e) == rule)
        out[run.seed] = next(b["accuracy"] for b in entry[fit_key]
                             if b["budget_mmacs"] == budget)
    return out


@pytest.mark.parametrize("rule,fit_key,table_no", [
    ("none / max_softmax", "budgeted", 1), ("product / entropy", "budgeted", 1),
    ("none / entropy", "budgeted_global", 2), ("product / max_softmax", "budgeted_global", 2)])
def test_cells_hold_mean_std_difference_and_significance(page, rule, fit_key, table_no):
    html = (page / "reports" / "lb" / "leaderboard.html").read_text()
    table = keyed(Tables(html).tables[f"lb-{table_no}-tiny3"])
    assert len(table) == 4 * 3  # 2 combiners x 2 criteria, 3 methods each
    for budget in (1.5, 2.5):
        base = values(page, "lb", "joint", rule, fit_key, budget)
        for method in SKILL:
            mine = values(page, "lb", method, rule, fit_key, budget)
            assert sorted(mine) == [0, 1, 2]
            mean, std = statistics.mean(mine.values()), statistics.stdev(mine.values())
            expected = f"{mean:.2f} ± {std:.2f}"
            if method != "joint":
                delta = mean - statistics.mean(base.values())
                expected += f" ({delta:+.2f})"
                p = scipy_stats.ttest_rel([mine[s] for s in (0, 1, 2)],
                                          [base[s] for s in (0, 1, 2)]).pvalue
                if p < 0.05:
                    expected += " ▲" if delta > 0 else " ▼"
            assert table[(rule, method)][f"{budget:g} MMACs"] == expected


def test_significance_per_rule_with_seeds(page):
    sig = pd.read_csv(page / "reports" / "lb" / "leaderboard-significance-tiny3.csv")
    assert len(sig) == 2 * 4 * 2 * 2  # methods x rules x fits x budgets
    assert set(sig.test) == {stats.TTEST} and set(sig.n) == {3}
    row = sig[(sig.method == "sequential") & (sig.rule == "product / entropy")
              & (sig.fit == "global") & (sig.point == 2.5)].iloc[0]
    a = values(page, "lb", "sequential", "product / entropy", "budgeted_global", 2.5)
    b = values(page, "lb", "joint", "product / entropy", "budgeted_global", 2.5)
    test = scipy_stats.ttest_rel([a[s] for s in (0, 1, 2)], [b[s] for s in (0, 1, 2)])
    assert row.p == pytest.approx(test.pvalue)
    assert row["diff"] == pytest.approx(statistics.mean(a.values()) - statistics.mean(b.values()))


def test_one_seed_bootstraps_over_images_under_each_rule(page):
    sig = pd.read_csv(page / "reports" / "one" / "leaderboard-significance-tiny3.csv")
    assert set(sig.test) == {stats.BOOTSTRAP} and set(sig.n) == {400}
    suite = Suite(page / "results" / "one")
    for rule, fit_key, fit in (("product / entropy", "budgeted", "per exit"),
                               ("none / max_softmax", "budgeted_global", "global")):
        correct = {}
        for method in ("boostnet", "joint"):
            (run,) = suite.runs_of("tiny3", method)
            entry = next(e for e in run.metrics["rules"] if R.entry_label(e) == rule)
            test = run.load_predictions()["test"]
            thresholds = next(b["thresholds"] for b in entry[fit_key] if b["budget_mmacs"] == 1.5)
            correct[method] = evaluate.correct_at(
                test["logits"], test["targets"], thresholds, entry["criterion"],
                {"name": entry["combiner"], **entry["combiner_options"]}).numpy()
            # the saved accuracy is what the thresholds give on the saved logits
            accuracy = next(b["accuracy"] for b in entry[fit_key] if b["budget_mmacs"] == 1.5)
            assert 100 * correct[method].mean() == pytest.approx(accuracy)
        expected = stats.paired_bootstrap(correct["boostnet"], correct["joint"])
        row = sig[(sig.method == "boostnet") & (sig.rule == rule) & (sig.fit == fit)
                  & (sig.point == 1.5)].iloc[0]
        assert (row.p, row["diff"], row.ci_low, row.ci_high) == pytest.approx(
            (expected.p, expected.diff, expected.low, expected.high))


def test_anytime_per_combiner(page):
    html = (page / "reports" / "lb" / "leaderboard.html").read_text()
    table = keyed(Tables(html).tables["lb-3-tiny3"])
    assert set(table) == {(c, m) for c in ("none", "product") for m in SKILL}
    for combiner in ("none", "product"):
        for method in SKILL:
            top1 = []
            for run in Suite(page / "results" / "lb").runs_of("tiny3", method):
                entry = next(e for e in run.metrics["rules"] if e["combiner"] == combiner)
                top1.append(entry["anytime"][2]["top1"])
            assert table[(combiner, method)]["exit 3"].startswith(
                f"{statistics.mean(top1):.2f} ± {statistics.stdev(top1):.2f}")


def test_training_cost(page):
    html = (page / "reports" / "lb" / "leaderboard.html").read_text()
    table = keyed(Tables(html).tables["cost"])
    joint = table[("tiny3", "joint")]
    assert joint["forward / backward passes per step"] == "1 / 1"
    assert joint["seconds per epoch"] == f"{np.mean(sum(SECONDS.values(), [])):.2f}"
    assert joint["training time"] == "1 min 10 s"  # mean of 60, 60 and 90 seconds: 70 s
    assert joint["epochs per stage"] == "3" and joint["peak memory (MiB)"] == "120"
    assert joint["runs recorded"] == "3 of 3" and joint["device"] == "cpu"
    seq = table[("tiny3", "sequential")]
    assert seq["runs recorded"] == "0 of 3"
    assert {seq[c] for c in ("forward / backward passes per step", "seconds per epoch",
                             "training time", "epochs per stage", "peak memory (MiB)")} == {"–"}


def test_notes_and_links(page):
    reports = page / "reports"
    html = (reports / "lb" / "leaderboard.html").read_text()
    for text in ("fitted on the held-out split", "simulated with thresholds",
                 "not corrected for the many comparisons", "paired t-test over seeds",
                 "not comparable: data set synthetic vs cifar100; backbone tiny3 vs"):
        assert text in html, text
    assert 'href="index.html"' in html  # back to the suite page
    assert 'href="leaderboard.html"' in (reports / "lb" / "index.html").read_text()
    index = (reports / "index.html").read_text()
    assert 'href="lb/leaderboard.html"' in index and 'href="one/leaderboard.html"' in index


PAPER_TRAINING = {"epochs": 300, "batch_size": 64, "optimizer": {"name": "sgd", "lr": 0.1},
                  "schedule": {"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1}}


def paper_runs(epochs: int) -> list[dict]:
    mmacs = tuple(10.0 * (n + 1) for n in range(10))
    return [{"run_id": f"{m}", "method": m, "backbone": "msdnet10_cifar", "dataset": "cifar100",
             "mmacs": mmacs, "params": tuple(range(10)), "budgets": (20.0, 30.0), "m": 60,
             "classes": 100,
             "config": {"training": {**PAPER_TRAINING, "epochs": epochs},
                        "dataset": {"name": "cifar100", "heldout": 5000}}}
            for m in ("joint", "boostnet", "sequential")]


def test_published_numbers_only_where_the_protocol_matches(tmp_path):
    results = tmp_path / "results"
    make_suite(results, "paper", paper_runs(300))
    make_suite(results, "short", paper_runs(30))
    render(results, tmp_path / "reports")
    paper_csv = pd.read_csv(tmp_path / "reports" / "paper" / "leaderboard-published.csv")
    assert set(paper_csv["our method"]) == {"joint", "boostnet"}  # sequential: no curve
    at20 = paper_csv[(paper_csv["our method"] == "boostnet")
                     & (paper_csv["at"] == "20 MMACs budget")].iloc[0]
    (run,) = Suite(results / "paper").runs_of("msdnet10_cifar", "boostnet")
    ours = next(b["accuracy"] for b in run.metrics["budgeted"] if b["budget_mmacs"] == 20.0)
    assert at20["protocol"] == "comparable" and at20["our top-1"] == pytest.approx(ours)
    assert at20["published top-1"] == 70.38
    assert at20["difference"] == pytest.approx(ours - 70.38)
    at40 = paper_csv[(paper_csv["our method"] == "boostnet")
                     & (paper_csv["at"] == "40 MMACs budget")].iloc[0]
    assert at40["protocol"] == "comparable, but our runs have no such point"
    assert math.isnan(at40["our top-1"])
    exit3 = paper_csv[(paper_csv["our method"] == "joint") & (paper_csv["at"] == "exit 3")].iloc[0]
    (run,) = Suite(results / "paper").runs_of("msdnet10_cifar", "joint")
    assert exit3["our top-1"] == pytest.approx(run.metrics["anytime"][2]["top1"])
    assert exit3["published top-1"] == 69.35

    short = pd.read_csv(tmp_path / "reports" / "short" / "leaderboard-published.csv")
    assert len(short) == 4  # per method: anytime and budgets, one row each
    assert set(short["protocol"]) == {"not comparable: epochs 30 vs 300"}
    assert short["our top-1"].isna().all()
    html = (tmp_path / "reports" / "short" / "leaderboard.html").read_text()
    assert "not comparable: epochs 30 vs 300" in html


def test_metrics_written_before_exit_rules_show_the_default_rule(tmp_path):
    results = tmp_path / "results"
    make_suite(results, "old", [{"run_id": "a", "method": "joint"},
                                {"run_id": "b", "method": "boostnet", "skill": 1.3}])
    for run in Suite(results / "old").runs:
        metrics = dict(run.metrics)
        del metrics["rules"]
        run.write_metrics(metrics)
    render(results, tmp_path / "reports")
    html = (tmp_path / "reports" / "old" / "leaderboard.html").read_text()
    table = keyed(Tables(html).tables["lb-1-tiny3"])
    assert set(table) == {("none / max_softmax", "joint"), ("none / max_softmax", "boostnet")}
    (run,) = Suite(results / "old").runs_of("tiny3", "boostnet")
    assert table[("none / max_softmax", "boostnet")]["1.5 MMACs"].startswith(
        f"{run.metrics['budgeted'][0]['accuracy']:.2f} (")


def test_correctness_cache_agrees_with_correct_at(page):
    suite = Suite(page / "results" / "one")
    (run,) = suite.runs_of("tiny3", "sequential")
    test = run.load_predictions()["test"]
    for entry in run.metrics["rules"]:
        for b in entry["budgeted"]:
            expected = evaluate.correct_at(test["logits"], test["targets"], b["thresholds"],
                                        entry["criterion"], entry["combiner"]).numpy()
            got = stats.rule_correctness(run, R.entry_label(entry), "per exit",
                                         b["budget_mmacs"])
            assert np.array_equal(got, expected)


def test_a_suite_without_baseline_has_no_differences(tmp_path):
    results = tmp_path / "results"
    make_suite(results, "nobase", [{"run_id": "a", "method": "boostnet", "skill": 1.3},
                                   {"run_id": "b", "method": "sequential"}], baseline=None)
    render(results, tmp_path / "reports")
    html = (tmp_path / "reports" / "nobase" / "leaderboard.html").read_text()
    table = keyed(Tables(html).tables["lb-1-tiny3"])
    assert set(table) == {("none / max_softmax", "boostnet"), ("none / max_softmax", "sequential")}
    assert all("(" not in cell for row in table.values() for cell in row.values())
    assert "Difference to the baseline" not in html and "no baseline in this suite" in html


def test_a_suite_of_several_regimes_shows_each_methods_regime(tmp_path):
    """Every method under every regime the suite ran: a row per label, the regime beside it
    (from each run's config.json), in the ranking and in the training cost."""
    regimes = {"joint": "joint", "joint-disjoint": "disjoint", "joint-mixed": "mixed",
               "boostnet-mixed": "mixed"}
    specs = []
    for seed in (0, 1):
        for label, regime in regimes.items():
            split = None if regime == "joint" else 1
            specs.append({"run_id": f"tiny3-{label}-s{seed}", "method": label.split("-")[0],
                          "label": label, "seed": seed, "skill": 1.0 + 0.1 * len(label),
                          "training": training(seed), "config": {"training": {
                              "epochs": 3, "batch_size": 64, "regime": regime,
                              "backbone_epochs": split}}})
    make_suite(tmp_path / "results", "reg", specs)
    render(tmp_path / "results", tmp_path / "reports")
    tables = Tables((tmp_path / "reports" / "reg" / "leaderboard.html").read_text()).tables
    ranking = tables["ranking-tiny3"]
    assert ranking[0][:3] == ["rank", "method", "regime"]
    assert {r[1]: r[2] for r in ranking[1:]} == regimes
    cost = keyed(tables["cost"])
    assert {k[1]: row["regime"] for k, row in cost.items()} == regimes


def test_a_joint_only_suite_has_no_regime_column(page):
    html = (page / "reports" / "lb" / "leaderboard.html").read_text()
    tables = Tables(html).tables
    assert "regime" not in tables["ranking-tiny3"][0] and "regime" not in tables["cost"][0]
