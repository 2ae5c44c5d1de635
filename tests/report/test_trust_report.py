"""The trustworthy-exit section of a suite's page and the leaderboard's ranking, from
fixture stores whose metrics.json come from the harness's own evaluation: the numbers in
the cells are the runs' values, mean ± std over seeds."""
from __future__ import annotations

import statistics

import pytest

from bench.report import render, trust
from bench.store import Suite
from report_fixtures import make_suite
from test_leaderboard import Tables, keyed

RISK = {"losses": ["consistency", "accuracy_gap"], "procedures": ["crc", "ltt"],
        "epsilons": [0.05, 0.1], "delta": 0.1, "grid": 101, "repeats": 5}
RULES = {"criteria": ["max_softmax", "entropy"], "risk_control": RISK, "alphas": [0.1]}
EVALUATION = {"criteria": RULES["criteria"], "combiners": [{"name": "none"}],
              "risk_control": RISK, "prediction_sets": {"alphas": [0.1]}}
SKILL = {"joint": 1.0, "boostnet": 1.3, "sequential": 0.6}


def runs(seeds, rules=RULES, evaluation=EVALUATION):
    return [{"run_id": f"tiny3-{m}-s{seed}", "method": m, "seed": seed, "skill": skill,
             "rules": rules, "evaluation": evaluation}
            for seed in seeds for m, skill in SKILL.items()]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    make_suite(root / "results", "trust", runs((0, 1, 2)), name="Trust", evaluation=EVALUATION)
    make_suite(root / "results", "plain", runs((0,), rules={}, evaluation=None), name="Plain")
    render(root / "results", root / "reports")
    return root


def ltt_values(root, method: str) -> list[float]:
    out = []
    for run in Suite(root / "results" / "trust").runs_of("tiny3", method):
        (row,) = [r for r in run.metrics["risk_control"]["results"]
                  if (r["loss"], r["procedure"], r["epsilon"]) == ("accuracy_gap", "ltt", 0.05)]
        out.append(row["mmacs"])
    return out


def test_the_ltt_column_is_the_runs_mmacs_mean_and_std(store):
    frame = trust.ltt_mmacs(Suite(store / "results" / "trust"))
    for method in SKILL:
        values = ltt_values(store, method)
        assert len(values) == 3
        expected = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
        assert trust.ltt_cell(frame, "tiny3", method) == expected


def test_the_ranking_comes_first_sorted_with_the_ltt_column(store):
    html = (store / "reports" / "trust" / "leaderboard.html").read_text()
    assert html.index("Ranking: test top-1") < html.index("Every exit rule at every budget")
    table = Tables(html).tables["ranking-tiny3"]
    assert table[0] == ["rank", "method", "1.5 MMACs", "2.5 MMACs", "mean over budgets",
                        trust.LTT_COLUMN]
    assert [r[1] for r in table[1:]] == ["boostnet", "joint", "sequential"]
    means = [float(r[4]) for r in table[1:]]
    assert means == sorted(means, reverse=True)
    frame = trust.ltt_mmacs(Suite(store / "results" / "trust"))
    for row in table[1:]:
        assert row[-1] == trust.ltt_cell(frame, "tiny3", row[1])
    # the per-rule tables sit in a collapsed section below
    assert '<details class="more" id="rules-tiny3">' in html


def test_a_suite_without_risk_control_shows_a_dash_and_anytime_quality(store):
    html = (store / "reports" / "plain" / "leaderboard.html").read_text()
    table = Tables(html).tables["ranking-tiny3"]
    assert [r[-1] for r in table[1:]] == ["–"] * 3
    page = (store / "reports" / "plain" / "index.html").read_text()
    assert "asks for no risk control" in page
    assert "Anytime quality" in page and "Risk control: test risk against" not in page


def test_monotonicity_and_exit_tables_are_mean_over_seeds(store):
    html = (store / "reports" / "trust" / "index.html").read_text()
    tables = Tables(html).tables
    mono = keyed(tables["trust-2-tiny3"], 1)
    runs_ = Suite(store / "results" / "trust").runs_of("tiny3", "boostnet")
    shares = [100 * next(m["violating_share"] for m in r.metrics["anytime_quality"]
                         ["monotonicity"] if m["tau"] == 0.1) for r in runs_]
    assert mono[("boostnet",)]["τ = 0.1"] == \
        f"{statistics.mean(shares):.2f} ± {statistics.stdev(shares):.2f}"
    drops = [100 * r.metrics["anytime_quality"]["correctness_decreases"] for r in runs_]
    assert mono[("boostnet",)]["correctness decreases"] == \
        f"{statistics.mean(drops):.2f} ± {statistics.stdev(drops):.2f}"
    exits = keyed(tables["trust-3-tiny3"], 1)
    auroc = [r.metrics["anytime_quality"]["exits"][1]["auroc"] for r in runs_]
    ece = [r.metrics["anytime_quality"]["exits"][1]["ece_percent"] for r in runs_]
    assert exits[("boostnet",)]["exit 2"] == \
        f"{statistics.mean(auroc):.3f} · {statistics.mean(ece):.1f}%"


def test_validity_and_prediction_set_tables(store):
    tables = Tables((store / "reports" / "trust" / "index.html").read_text()).tables
    validity = keyed(tables["trust-1-tiny3"], 2)
    share = {m: [row["exceeded_share"]
                 for r in Suite(store / "results" / "trust").runs_of("tiny3", m)
                 for row in r.metrics["risk_control"]["validity"]["rows"]
                 if (row["loss"], row["procedure"], row["epsilon"]) == ("accuracy_gap", "ltt",
                                                                      0.1)]
             for m in SKILL}
    assert [len(v) for v in share.values()] == [3, 3, 3]
    per_method = [statistics.mean(v) for v in share.values()]  # mean over seeds
    assert validity[("accuracy_gap", "ltt")]["ε = 0.1"].startswith(
        f"{100 * statistics.mean(per_method):.1f}% (max {100 * max(per_method):.1f}%)")
    sets = tables["trust-4-tiny3"]
    assert sets[0] == ["α", "method", "exit 1", "exit 2", "exit 3"]
    assert [r[:2] for r in sets[1:]] == [["0.1 (target 90%)", m] for m in SKILL]


def test_an_error_block_is_named_on_the_page(tmp_path):
    make_suite(tmp_path / "results", "small", [
        {"run_id": "tiny3-joint-s0", "method": "joint", "m": 15, "rules": RULES,
         "evaluation": EVALUATION}], evaluation=EVALUATION)
    render(tmp_path / "results", tmp_path / "reports")
    page = (tmp_path / "reports" / "small" / "index.html").read_text()
    assert ("Not computed: tiny3-joint-s0: risk_control: the held-out split has 15 images; "
            "calibrating needs at least 20") in page
    assert "Anytime quality" in page  # computed from the test split
