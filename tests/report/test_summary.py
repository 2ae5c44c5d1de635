"""What the numbers show: one sentence per backbone, computed from the results, on the
suite page's first screen and the index card, with the suite's description beside it."""

from __future__ import annotations

import math

from markupsafe import escape

from bench import report
from bench.report import summary, tables
from bench.store import Suite
from report_fixtures import make_suite

DESCRIPTION = "A tiny task: it shows the machinery, not the paper's claim (suites/cifar100.yaml)."


def metrics(budget_acc: float, exit_acc: list[float]) -> dict:
    anytime = [{"exit": n + 1, "mmacs": 10.0 * (n + 1), "top1": a, "top5": 99.0}
               for n, a in enumerate(exit_acc)]
    return {"anytime": anytime, "heldout_anytime": anytime,
            "budgeted": [{"budget_mmacs": 20.0, "accuracy": budget_acc, "mmacs": 19.5,
                          "thresholds": [0.5, -math.inf], "exit_shares": [0.05, 0.95]}],
            "curve": []}


def hand_suite(tmp_path, values: dict, baseline="joint"):
    """Runs with hand-set metrics: (method, seed) -> (budget top-1, [exit top-1s])."""
    runs = [{"run_id": f"b-{m}-s{s}", "method": m, "seed": s, "mmacs": (10.0, 20.0),
             "params": (1000, 2000), "budgets": (20.0,), "metrics": metrics(*v)}
            for (m, s), v in values.items()]
    return Suite(make_suite(tmp_path, "hand", runs, name="Hand", baseline=baseline,
                            description=DESCRIPTION))


def test_the_baseline_trade_off_and_each_method_against_it_with_its_test(tmp_path):
    # joint's exits: (60 + 62) / 2 = 61 and (71 + 73) / 2 = 72; exit 1 costs 10 of 20 MMACs.
    # At the budget boostnet - joint = 3 and 4: mean 3.5, paired t = 7 with 1 df, p = 0.09.
    suite = hand_suite(tmp_path, {("joint", 0): (70.0, [60.0, 71.0]),
                                  ("joint", 1): (72.0, [62.0, 73.0]),
                                  ("boostnet", 0): (73.0, [61.0, 74.0]),
                                  ("boostnet", 1): (76.0, [65.0, 77.0])})
    assert summary.summary(suite, tables.comparison(suite)) == [
        "tiny3, 2 seeds: joint's exit 1 is 11.0 points below its last exit (61.0% against "
        "72.0%; exit 1 costs 50% of the last); at the budget boostnet is +3.5 points from "
        "joint (significant at 0 of 1, paired t-test over 2 seeds)."]


def test_a_significant_difference_is_counted(tmp_path):
    # boostnet - joint = -10.0, -10.5, -9.5 over three seeds: t = -34.6, p < 0.001.
    values = {}
    for seed, (j, b) in enumerate([(80.0, 70.0), (81.0, 70.5), (79.0, 69.5)]):
        values[("joint", seed)] = (j, [j - 20, j])
        values[("boostnet", seed)] = (b, [b - 5, b])
    suite = hand_suite(tmp_path, values)
    (line,) = summary.summary(suite, tables.comparison(suite))
    assert line.startswith("tiny3, 3 seeds: joint's exit 1 is 20.0 points below")
    assert "boostnet is -10.0 points from joint (significant at 1 of 1, paired t-test " \
           "over 3 seeds)" in line


def test_without_a_baseline_only_the_first_methods_trade_off(tmp_path):
    suite = hand_suite(tmp_path, {("sequential", 0): (50.0, [55.0, 52.0]),
                                  ("boostnet", 0): (60.0, [58.0, 61.0])}, baseline=None)
    assert summary.summary(suite, tables.comparison(suite)) == [
        "tiny3, 1 seed: sequential's exit 1 is 3.0 points above its last exit (55.0% "
        "against 52.0%; exit 1 costs 50% of the last)."]
    assert summary.summary(suite, tables.comparison(tmp_path / "nothing")) == []


def test_the_page_and_the_index_card_show_the_summary_and_the_description(tmp_path):
    hand_suite(tmp_path / "results", {("joint", 0): (70.0, [60.0, 71.0]),
                                      ("joint", 1): (72.0, [62.0, 73.0]),
                                      ("boostnet", 0): (73.0, [61.0, 74.0]),
                                      ("boostnet", 1): (76.0, [65.0, 77.0])})
    report.render(tmp_path / "results", tmp_path / "reports")
    page = (tmp_path / "reports" / "hand" / "index.html").read_text()
    index = (tmp_path / "reports" / "index.html").read_text()
    sentence = "joint&#39;s exit 1 is 11.0 points below its last exit"
    # the first screen: right under the title, then the description, before any figure
    described = str(escape(DESCRIPTION))  # as jinja escapes it
    assert page.index('id="summary"') < page.index(sentence) < page.index(described) \
        < page.index('class="plot"') < page.index("<table")
    assert sentence in index and described in index
