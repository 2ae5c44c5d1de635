"""bench.store.rules and the store's exit-rule rows: names, lookups, old metrics.json files."""
import math

from bench import store
from bench.store import rules as R

OLD_METRICS = {  # metrics.json as written before exit rules existed
    "anytime": [{"exit": 1, "mmacs": 1.0, "top1": 40.0, "top5": 90.0},
                {"exit": 2, "mmacs": 2.0, "top1": 60.0, "top5": 95.0}],
    "heldout_anytime": [{"exit": 1, "top1": 41.0}, {"exit": 2, "top1": 61.0}],
    "budgeted": [{"budget_mmacs": 1.5, "accuracy": 55.0, "mmacs": 1.49, "thresholds": [0.8, -1.0],
                  "exit_shares": [0.5, 0.5], "q": 1.0, "heldout_mmacs": 1.5}],
    "curve": [{"q": 1.0, "accuracy": 55.0, "mmacs": 1.49, "exit_shares": [0.5, 0.5],
               "thresholds": [0.8, -1.0]}],
}


def entry(combiner, criterion, options=None, **extra):
    return {"combiner": combiner, "combiner_options": options or {}, "criterion": criterion,
            **extra}


def test_labels():
    assert R.combiner_label("product") == "product"
    assert R.combiner_label("product", {"weights": "linear"}) == "product(weights=linear)"
    assert R.combiner_label("product", {"weights": [1, 2]}) == "product(weights=[1, 2])"
    assert R.rule_label("caching", {}, "entropy") == "caching / entropy"
    assert R.entry_label(entry("product", "margin", {"weights": "linear"})) == \
        "product(weights=linear) / margin"
    assert R.split_combiner("none") == ("none", {})
    assert R.split_combiner({"name": "product", "weights": "linear"}) == \
        ("product", {"weights": "linear"})


def test_old_metrics_read_as_the_default_rule():
    (e,) = R.entries(OLD_METRICS)
    assert R.is_default(e) and e["budgeted"] == OLD_METRICS["budgeted"]
    assert e["anytime"] == [{"exit": 1, "mmacs": 1.0, "top1": 40.0},
                            {"exit": 2, "mmacs": 2.0, "top1": 60.0}]
    assert R.entries(None) == [] and R.entries({}) == []


def test_rules_metrics_keep_their_entries():
    metrics = {**OLD_METRICS, "rules": [entry("none", "max_softmax"), entry("none", "margin")]}
    assert [R.entry_label(e) for e in R.entries(metrics)] == ["none / max_softmax",
                                                              "none / margin"]


def test_missing_rules_and_the_global_fit():
    metrics = {"rules": [entry("none", "max_softmax", budgeted=[]),
                         entry("product", "entropy", {"weights": "linear"}, budgeted=[])]}
    assert R.missing(metrics, ["max_softmax"], ["none"], False) == []
    assert R.missing(metrics, ["max_softmax", "entropy"],
                     ["none", {"name": "product", "weights": "linear"}], False) == [
        "none / entropy", "product(weights=linear) / max_softmax"]
    assert R.missing(metrics, ["entropy"], [{"name": "product"}], False) == ["product / entropy"]
    assert R.missing(metrics, ["max_softmax"], ["none"], True) == ["none / max_softmax"]
    assert R.missing(OLD_METRICS, ["max_softmax"], ["none"], False) == ["none / max_softmax"]


def test_merged_keeps_rules_no_longer_asked_for():
    old = [entry("none", "max_softmax", tag="old"), entry("caching", "margin", tag="old")]
    new = [entry("none", "max_softmax", tag="new"), entry("none", "entropy", tag="new")]
    out = R.merged(old, new)
    assert [(R.entry_label(e), e["tag"]) for e in out] == [
        ("none / max_softmax", "new"), ("none / entropy", "new"), ("caching / margin", "old")]


def test_run_rule_rows(tmp_path):
    run = store.Suite(tmp_path / "s").run("r1")
    run.write_config({"run_id": "r1", "backbone": {"name": "b", "label": "b"},
                      "method": {"name": "joint", "label": "joint"}, "seed": 3})
    run.set_status("done", epoch=1, epochs=1, fingerprint="x")
    budget = {"budget_mmacs": 1.5, "accuracy": 50.0, "mmacs": 1.4}
    anytime = [{"exit": 1, "mmacs": 1.0, "top1": 30.0}, {"exit": 2, "mmacs": 2.0, "top1": 70.0}]
    run.write_metrics({**OLD_METRICS, "rules": [
        entry("none", "max_softmax", anytime=anytime, budgeted=[budget]),
        entry("none", "entropy", anytime=anytime, budgeted=[{**budget, "accuracy": 52.0}],
              budgeted_global=[{**budget, "accuracy": 51.0}])]})
    rows = run.rule_rows()
    budgets = [(r["rule"], r["fit"], r["top1"]) for r in rows if r["kind"] == "budget"]
    assert budgets == [("none / max_softmax", "per exit", 50.0),
                       ("none / entropy", "per exit", 52.0), ("none / entropy", "global", 51.0)]
    exits = [(r["rule"], r["point"], r["top1"]) for r in rows if r["kind"] == "exit"]
    assert exits == [("none", 1, 30.0), ("none", 2, 70.0)]  # once per combiner
    assert {r["seed"] for r in rows} == {3} and {r["method"] for r in rows} == {"joint"}
    frame = store.Suite(tmp_path / "s").rule_rows
    assert len(frame) == len(rows) and list(frame.columns) == store.files.RULE_COLUMNS
    assert math.isclose(frame["top1"].sum(), sum(r["top1"] for r in rows))


def test_training_record(tmp_path):
    run = store.Suite(tmp_path / "s").run("r1")
    assert run.training == {}
    record = {"method": "joint", "stages": [{"stage": 1, "epochs": 2}],
              "epochs": [{"epoch": 1, "train_seconds": 2.0}, {"epoch": 2, "train_seconds": 3.0}]}
    run.write_training(record)
    assert store.Suite(tmp_path / "s").run("r1").training == record
    run.file("training.json").write_text("[1, 2]")  # not a mapping: read as absent
    assert store.Suite(tmp_path / "s").run("r1").training == {}
