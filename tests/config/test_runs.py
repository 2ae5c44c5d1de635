"""Run identity: the ids of unchanged configurations never change (results keep them)."""
import textwrap

import pytest

from bench import flops
from bench.config import build_suite, load_suite, run_hash, select_targets, study_name

# Fixed suites and the run ids the harness gave them before the redesign (commit 31dac89).
# If one of these changes, existing results are orphaned: don't change them, add a
# changelog entry and a migration if you really must.
SMALL = """\
name: small
dataset: {name: synthetic, heldout: 100, options: {train_size: 500}}
backbones: [chain_tiny]
methods:
  - joint
  - boostnet
  - {name: boostnet, label: bn-t25, options: {temperature: [0.25, 0.25]}}
  - sequential
  - {name: sequential, label: seq-free, options: {freeze_previous: false, loss_weights: [1, 2, 3]}}
seeds: [0, 1]
training: {epochs: 3}
budgets: {fractions: [0.5, 1.0]}
evaluation: {calibration: true}
"""
SMALL_IDS = [
    "chain_tiny--joint--s0--09f49d0d", "chain_tiny--joint--s1--234bc633",
    "chain_tiny--boostnet--s0--1ddb1dff", "chain_tiny--boostnet--s1--9e9e31c3",
    "chain_tiny--bn-t25--s0--771b12e2", "chain_tiny--bn-t25--s1--62bb4a66",
    "chain_tiny--sequential--s0--87e0a0ca", "chain_tiny--sequential--s1--49a53bb2",
    "chain_tiny--seq-free--s0--1ca41765", "chain_tiny--seq-free--s1--c9baacae"]

TUNED = {
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

# The paper's CIFAR-100 protocol as suites/cifar100.yaml wrote it.
CIFAR100 = """\
name: cifar100
dataset: {name: cifar100, root: data, download: true, heldout: 5000,
          subset: {train: null, test: null}, options: {augment: true}}
backbones: [msdnet10_cifar]
methods:
  - joint
  - sequential
  - {name: boostnet, options: {temperature: 0.5, grad_rescale: true, joint: true}}
seeds: [0, 1, 2]
training:
  epochs: 300
  batch_size: 64
  eval_batch_size: 256
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 1.0e-4, nesterov: false}
  schedule: {name: step, milestones: [0.5, 0.75], gamma: 0.1}
  device: auto
  amp: false
  workers: 0
  channels_last: false
budgets: {mmacs: [20, 30, 40, 50, 60]}
"""
CIFAR100_IDS = [
    "msdnet10_cifar--joint--s0--9cbbd02a", "msdnet10_cifar--joint--s1--0b01e3ff",
    "msdnet10_cifar--joint--s2--f0739f93", "msdnet10_cifar--sequential--s0--fafd9f92",
    "msdnet10_cifar--sequential--s1--32ddc78b", "msdnet10_cifar--sequential--s2--922787ca",
    "msdnet10_cifar--boostnet--s0--72b893e7", "msdnet10_cifar--boostnet--s1--f76a5bf6",
    "msdnet10_cifar--boostnet--s2--f218b01e"]
MSDNET10_MMACS = [15.31, 25.75, 38.11, 52.45, 62.61, 74.54, 88.24, 100.58, 110.68, 122.26]


pytestmark = pytest.mark.usefixtures("fresh_cache")


def write(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_run_ids_of_a_fixed_suite_are_pinned(tmp_path):
    suite = load_suite(write(tmp_path, SMALL))
    assert [r.run_id for r in suite.runs] == SMALL_IDS


def test_the_hashed_config_keeps_its_keys_and_values(tmp_path):
    run = load_suite(write(tmp_path, SMALL)).runs[2]
    config = run.config
    assert list(config) == ["code_version", "dataset", "num_classes", "input_size", "training",
                            "backbone", "method", "seed", "budgets_mmacs", "evaluation"]
    assert config["code_version"] == "0.1.0"
    assert config["method"] == {"name": "boostnet", "label": "boostnet", "options": {
        "temperature": 0.5, "grad_rescale": True, "joint": True, "loss_weights": None,
        "freeze_previous": True}}
    assert config["training"]["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9,
                                               "weight_decay": 1e-4, "nesterov": False}
    assert config["budgets_mmacs"] == [0.427288, 0.854576]
    assert run.run_id.endswith("--" + run_hash(config))
    # what config.json adds (and evaluation options) stay out of the hash
    extra = {**config, "suite": "small", "run_id": run.run_id, "tuned": {"x": 1},
             "evaluation": {"calibration": False}}
    assert run_hash(extra) == run_hash(config)


def test_tuned_runs_and_study_names_are_pinned():
    suite = build_suite(TUNED, "s.yaml")
    assert [r.run_id for r in suite.runs] == ["chain_tiny--joint--s0--1976c3ae",
                                              "chain_tiny--boost-tuned--s0--b23673de"]
    (target,) = select_targets(suite)
    assert study_name(target, suite.config.tune) == "tiny-tune--chain_tiny--boost-tuned--ec9f285d"
    assert suite.runs[1].config["tune"] == {
        "runs": None, "seed": 0, "space": {"per_exit": False, "low": 0.1, "high": 1.5,
                                           "log": True},
        "trials": 1, "timeout": None, "epochs": None, "objective": "budgeted",
        "sampler": {"name": "tpe", "seed": 0}, "pruner": {"name": "none"}}


@pytest.fixture
def msdnet10_costs(monkeypatch):
    real = flops.per_exit

    def per_exit(model, input_size=None):  # docs/paper.md's counts; tracing msdnet10 takes long
        if model.num_exits == 10:
            return [int(m * 1e6) for m in MSDNET10_MMACS]
        return real(model, input_size)

    monkeypatch.setattr(flops, "per_exit", per_exit)


def test_the_paper_protocol_keeps_its_run_ids(tmp_path, msdnet10_costs):
    suite = load_suite(write(tmp_path, CIFAR100))
    assert [r.run_id for r in suite.runs] == CIFAR100_IDS


def test_the_reference_pipeline_options_keep_ids_at_their_defaults(tmp_path, msdnet10_costs):
    """training.drop_last and CIFAR's normalization came after the ids were pinned: spelled
    out at their defaults they leave the ids alone; the reference's values change them."""
    def ids(drop_last, normalization):
        text = (CIFAR100.replace("options: {augment: true}",
                                 f"options: {{augment: true, normalization: {normalization}}}")
                .replace("  channels_last: false", f"  channels_last: false\n  drop_last: {drop_last}"))
        assert f"drop_last: {drop_last}" in text and f"normalization: {normalization}" in text
        return [r.run_id for r in load_suite(write(tmp_path, text)).runs]

    assert ids("true", "standard") == CIFAR100_IDS
    for changed in (ids("false", "standard"), ids("true", "reference")):
        assert all(a != b for a, b in zip(changed, CIFAR100_IDS))


def test_keys_added_later_keep_old_ids_at_their_legacy_value(tmp_path):
    """Synthetic knobs added after ids were pinned leave the id alone at the value that
    reproduces the old data, and change it at any other value."""
    text = textwrap.dedent(SMALL)
    pinned = [r.run_id for r in load_suite(write(tmp_path, text)).runs]
    explicit = text.replace("options: {", "options: {clutter: 0.0, min_scale: 1.0, ", 1)
    assert explicit != text
    assert [r.run_id for r in load_suite(write(tmp_path, explicit)).runs] == pinned
    changed = text.replace("options: {", "options: {clutter: 0.5, ", 1)
    ids = [r.run_id for r in load_suite(write(tmp_path, changed)).runs]
    assert all(a != b for a, b in zip(ids, pinned))


def test_precision_keeps_the_ids_of_runs_made_with_amp(tmp_path, msdnet10_costs):
    """training.precision replaced training.amp: fp32 (the default) keeps the ids of amp
    false, fp16 those of amp true; auto and bf16 train differently on a GPU and get ids of
    their own."""
    def ids(training_line):
        text = CIFAR100.replace("  amp: false\n", training_line)
        return [r.run_id for r in load_suite(write(tmp_path, text)).runs]

    assert ids("") == ids("  precision: fp32\n") == CIFAR100_IDS
    amp_true = ids("  amp: true\n")
    assert ids("  precision: fp16\n") == amp_true
    assert all(a != b for a, b in zip(amp_true, CIFAR100_IDS))
    auto, bf16 = ids("  precision: auto\n"), ids("  precision: bf16\n")
    assert len(set(auto + bf16 + amp_true + CIFAR100_IDS)) == 4 * len(CIFAR100_IDS)
