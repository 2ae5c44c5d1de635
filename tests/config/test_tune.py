"""The tune: section (bench.config.tune): its schema, the runs it selects and the names of
their studies."""
import pytest

from bench.config import SuiteError, build_suite, select_targets, study_name

BASE = {
    "name": "tiny-tune",
    "dataset": {"name": "synthetic", "heldout": 64,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 256,
                            "test_size": 64, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint", {"name": "boostnet", "label": "boost-tuned",
                          "options": {"temperature": "tuned"}}],
    "training": {"epochs": 2, "batch_size": 32, "device": "cpu",
                 "schedule": {"name": "constant"}, "optimizer": {"lr": 0.05}},
    "budgets": {"fractions": [0.6, 0.8]},
    "evaluation": {"calibration": True},
    "tune": {"trials": 1, "space": {"low": 0.1, "high": 1.5}, "pruner": "none"},
}


@pytest.mark.parametrize("tune_section, path, detail", [
    ({"trials": 0}, "tune.trials", "integer >= 1"),
    ({"space": {"low": 2.0, "high": 1.0}}, "tune.space.high", "> tune.space.low"),
    ({"space": {"low": 0.0}}, "tune.space.low", "expected a number > 0 (the search is log-uniform)"),
    ({"objective": "loss"}, "tune.objective", "known: budgeted, anytime"),
    ({"sampler": "grid"}, "tune.sampler.name", "known: tpe, random"),
    ({"pruner": {"name": "threshold"}}, "tune.pruner", "lower and/or upper"),
    ({"seed": 3}, "tune.seed", "not one of the suite's seeds"),
    ({"budget": 3}, "tune.budget", "unknown key"),
])
def test_bad_tune_sections_name_file_and_key(tmp_path, tune_section, path, detail):
    with pytest.raises(SuiteError) as e:
        build_suite({**BASE, "tune": tune_section}, "s.yaml")
    assert e.value.file == "s.yaml" and e.value.path == path and detail in e.value.message


def test_budgeted_objective_needs_budgets_and_tuned_needs_a_tune_section():
    with pytest.raises(SuiteError) as e:
        build_suite({**BASE, "budgets": None}, "s.yaml")
    assert e.value.path == "tune.objective"
    with pytest.raises(SuiteError) as e:
        build_suite({**BASE, "tune": None}, "s.yaml")
    assert e.value.path == "methods[1].options.temperature"


def test_targets_and_study_names():
    raw = {**BASE, "methods": ["joint", "boostnet", {"name": "boostnet", "label": "b2",
                                                      "options": {"temperature": 0.25}}],
           "tune": {"runs": "*/b*", "space": {"per_exit": True}}}
    suite = build_suite(raw, "s.yaml")
    targets = select_targets(suite)
    assert [t.method_label for t in targets] == ["boostnet", "b2"]
    names = [study_name(t, suite.config.tune) for t in targets]
    assert names[0].startswith("tiny-tune--chain_tiny--boostnet--") and len(set(names)) == 2
    # Deterministic, and independent of the run's own temperature, seed and trial budget.
    again = build_suite({**raw, "tune": {**raw["tune"], "trials": 50}}, "s.yaml")
    assert [study_name(t, again.config.tune) for t in select_targets(again)] == names
    with pytest.raises(SuiteError) as e:
        build_suite({**raw, "tune": {"runs": "*/joint"}}, "s.yaml")
    assert e.value.path == "tune.runs" and "no option to tune" in e.value.message


def test_tune_epochs_must_cover_every_stage_of_a_tuned_method():
    raw = {**BASE, "methods": ["sequential"], "tune": {"epochs": 2},
           "training": {**BASE["training"], "epochs": 6}}
    with pytest.raises(SuiteError) as e:
        build_suite(raw, "s.yaml")
    assert e.value.path == "tune.epochs"
    assert "'sequential' trains in 3 stages and needs at least 3 epochs, found 2" in e.value.message
    assert build_suite({**raw, "tune": {"epochs": 3}}, "s.yaml").config.tune.epochs == 3


def test_a_tune_section_with_nothing_to_tune():
    with pytest.raises(SuiteError) as e:
        build_suite({**BASE, "methods": ["joint"]}, "s.yaml")
    assert e.value.path == "tune.runs" and "matches no run with an option to tune" in \
        e.value.message
