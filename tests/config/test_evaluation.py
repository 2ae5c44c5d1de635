"""The suite's evaluation section: exit rules, their defaults and errors, and that no
evaluation key changes a run id."""
import textwrap

import pytest

from bench.config import SuiteError, load_suite
from bench.evaluate import combiners

MINIMAL = """\
name: mini
dataset: {name: synthetic, options: {num_classes: 4}}
backbones: [chain_tiny]
methods: [joint]
"""


pytestmark = pytest.mark.usefixtures("fresh_cache")


def load(tmp_path, extra: str = "", name: str = "suite.yaml"):
    path = tmp_path / name
    path.write_text(MINIMAL + textwrap.dedent(extra))
    return load_suite(path)


def test_defaults_are_the_rule_metrics_always_had(tmp_path):
    ev = load(tmp_path).config.evaluation
    assert ev.criteria == ("max_softmax",)
    assert [dict(c) for c in ev.combiners] == [{"name": "none"}]
    assert ev.global_threshold is False and ev.calibration is False


def test_rules_resolve_with_options(tmp_path):
    s = load(tmp_path, """\
        evaluation:
          criteria: [max_softmax, entropy, margin, patience]
          combiners: [none, product, {name: product, weights: linear}, caching,
                      {name: product, weights: [1, 2, 3]}]
          global_threshold: true
        """)
    ev = s.resolved()["evaluation"]
    assert ev["criteria"] == ["max_softmax", "entropy", "margin", "patience"]
    assert ev["combiners"] == [{"name": "none"}, {"name": "product"},
                               {"name": "product", "weights": "linear"}, {"name": "caching"},
                               {"name": "product", "weights": [1, 2, 3]}]
    assert ev["global_threshold"] is True
    assert s.runs[0].config["evaluation"] == ev  # config.json holds it too


def test_evaluation_keys_never_change_a_run_id(tmp_path):
    plain = load(tmp_path, name="a.yaml").runs[0].run_id
    rules = load(tmp_path, """\
        evaluation: {calibration: true, criteria: [entropy, patience],
                     combiners: [caching, {name: product, weights: linear}],
                     global_threshold: true}
        """, name="b.yaml").runs[0].run_id
    assert plain == rules
    trust = load(tmp_path, """\
        evaluation: {risk_control: {epsilons: [0.05], repeats: 3}, prediction_sets: {}}
        """, name="c.yaml").runs[0].run_id
    assert plain == trust


def test_trustworthy_sections_are_off_unless_given_and_take_the_defaults(tmp_path):
    ev = load(tmp_path).config.evaluation
    assert ev.risk_control is None and ev.prediction_sets is None
    s = load(tmp_path, """\
        evaluation: {risk_control: {}, prediction_sets: {}}
        """, name="on.yaml")
    resolved = s.resolved()["evaluation"]
    assert resolved["risk_control"] == {
        "losses": ["consistency", "accuracy_gap", "brier_gap"],
        "procedures": ["crc", "ucb", "ltt"], "epsilons": [0.01, 0.02, 0.05, 0.1, 0.15, 0.2],
        "delta": 0.1, "grid": 101, "repeats": 100}
    assert resolved["prediction_sets"] == {"alphas": [0.05, 0.1]}
    assert s.runs[0].config["evaluation"] == resolved


BAD = [
    ("evaluation: {criteria: [max_softmax, entropie]}", "evaluation.criteria[1]",
     "unknown exit criterion 'entropie'; known: entropy, margin, max_softmax, patience"),
    ("evaluation: {criteria: []}", "evaluation.criteria", "a non-empty list"),
    ("evaluation: {criteria: [margin, margin]}", "evaluation.criteria[1]", "listed twice"),
    ("evaluation: {combiners: [sum]}", "evaluation.combiners[0].name",
     "unknown combiner 'sum'; known: caching, none, product"),
    ("evaluation: {combiners: [{weights: linear}]}", "evaluation.combiners[0]",
     "a combiner name or a mapping with a name key"),
    ("evaluation: {combiners: [{name: caching, weights: linear}]}", "evaluation.combiners[0]",
     "combiner 'caching' got options ['weights']; valid options: none"),
    ("evaluation: {combiners: [product, {name: product}]}", "evaluation.combiners[1]",
     "listed twice"),
    ("evaluation: {combiners: [{name: product, weights: [1, 2]}]}", "evaluation.combiners[0]",
     "on backbone 'chain_tiny' (3 exits): product weights must be 3 positive numbers"),
    ("evaluation: {combiners: [{name: product, weights: quadratic}]}", "evaluation.combiners[0]",
     "product weights must be 3 positive numbers"),
    ("evaluation: {global_threshold: yes please}", "evaluation.global_threshold",
     "true or false"),
    ("evaluation: {rules: [entropy]}", "evaluation.rules",
     "allowed: calibration, criteria, combiners, global_threshold, risk_control, "
     "prediction_sets"),
    ("evaluation: {risk_control: {epsilons: [0.05, 0]}}", "evaluation.risk_control.epsilons[1]",
     "expected a number > 0, found 0"),
    ("evaluation: {risk_control: {epsilons: [1.0]}}", "evaluation.risk_control.epsilons[0]",
     "expected a number < 1, found 1.0"),
    ("evaluation: {risk_control: {delta: 1}}", "evaluation.risk_control.delta",
     "expected a number < 1, found 1"),
    ("evaluation: {risk_control: {delta: -0.1}}", "evaluation.risk_control.delta",
     "expected a number > 0, found -0.1"),
    ("evaluation: {risk_control: {losses: [hinge]}}", "evaluation.risk_control.losses[0]",
     "unknown loss 'hinge'; known: consistency, accuracy_gap, brier_gap"),
    ("evaluation: {risk_control: {procedures: [ltt, bonferroni]}}",
     "evaluation.risk_control.procedures[1]",
     "unknown procedure 'bonferroni'; known: crc, ucb, ltt"),
    ("evaluation: {risk_control: {grid: 1}}", "evaluation.risk_control.grid",
     "expected an integer >= 2, found 1"),
    ("evaluation: {risk_control: {repeats: 0}}", "evaluation.risk_control.repeats",
     "expected an integer >= 1, found 0"),
    ("evaluation: {risk_control: {epsilon: 0.1}}", "evaluation.risk_control.epsilon",
     "allowed: losses, procedures, epsilons, delta, grid, repeats"),
    ("evaluation: {prediction_sets: {alphas: [0.1, 1.5]}}",
     "evaluation.prediction_sets.alphas[1]", "expected a number < 1, found 1.5"),
]


@pytest.mark.parametrize("extra,path,detail", BAD, ids=[b[1] for b in BAD])
def test_bad_evaluation_names_file_and_key(tmp_path, extra, path, detail):
    with pytest.raises(SuiteError) as err:
        load(tmp_path, extra + "\n", name="bad.yaml")
    assert str(err.value).startswith(f"{tmp_path / 'bad.yaml'}: {path}: "), str(err.value)
    assert detail in str(err.value), str(err.value)


def test_a_criterion_that_cannot_score_the_classes_fails_before_training(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(MINIMAL.replace("num_classes: 4", "num_classes: 1")
                    + "evaluation: {criteria: [max_softmax, margin]}\n")
    with pytest.raises(SuiteError, match=r"evaluation.criteria\[1\]: on backbone "
                                          r"'chain_tiny' \(1 classes\): the margin"):
        load_suite(path)


def test_a_plugin_rule_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setattr(combiners.COMBINERS, "_entries", dict(combiners.COMBINERS._entries))  # undone after
    plugin = tmp_path / "mean_rule.py"
    plugin.write_text(textwrap.dedent("""\
        import torch

        from bench.evaluate import combiners

        if "test_mean" not in combiners.names():
            @combiners.register("test_mean")
            def test_mean(f):
                return f.cumsum(0) / torch.arange(1, len(f) + 1)[:, None, None]
        """))
    s = load(tmp_path, "plugins: [mean_rule.py]\nevaluation: {combiners: [none, test_mean]}\n")
    assert "test_mean" in combiners.names()
    assert [dict(c) for c in s.config.evaluation.combiners][1] == {"name": "test_mean"}
