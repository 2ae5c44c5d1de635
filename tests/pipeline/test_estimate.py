"""bench.pipeline.speed.estimate (``bench run --dry-run --estimate``): the images and steps a
run takes, the hours from the timed steps (a run's hours = its steps x their seconds, plus
evaluation; the suite's = the sum of its runs'), the printed lines saying the same, and
the combinations it refuses."""
import re
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bench import cli
from bench.config import load_suite
from bench.errors import UsageError
from bench.pipeline.speed import estimate

ROOT = Path(__file__).resolve().parents[2]
SUITE = """\
name: est
dataset: {name: DATASET, heldout: HELDOUT, options: OPTIONS}
backbones: [{name: chain_tiny, overrides: {image_size: 16}}]
methods: [joint, boostnet, sequential]
seeds: [0, 1]
training: {epochs: 4, batch_size: 16, eval_batch_size: 32, device: cpu}
"""


def suite(tmp_path, dataset="synthetic", heldout=40,
          options="{train_size: 200, test_size: 50, image_size: 16}", *overrides):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE.replace("DATASET", dataset).replace(
        "HELDOUT", str(heldout)).replace("OPTIONS", options)))
    return load_suite(path, list(overrides))


def test_steps_per_epoch_follow_the_data_rule():
    assert estimate.steps_per_epoch(160, 16, drop_last=True) == 10
    assert estimate.steps_per_epoch(170, 16, drop_last=True) == 10
    assert estimate.steps_per_epoch(170, 16, drop_last=False) == 11
    assert estimate.steps_per_epoch(10, 16, drop_last=True) == 1  # less than one batch


def test_the_training_images_are_what_the_held_out_split_and_the_subset_leave(tmp_path):
    spec = suite(tmp_path).runs[0]
    assert estimate.split_sizes(spec) == (160, 40, 50)
    spec = suite(tmp_path, "synthetic", 40, "{train_size: 200, test_size: 50, image_size: 16}",
                 "dataset.subset.train=100", "dataset.subset.test=20").runs[0]
    assert estimate.split_sizes(spec) == (100, 40, 20)
    cifar = suite(tmp_path, "cifar10", 5000, "{}", "backbones=[chain_tiny]").runs[0]
    assert estimate.split_sizes(cifar) == (45_000, 5000, 10_000)


def test_a_data_set_of_unknown_size_is_a_clear_error(tmp_path, monkeypatch):
    cifar = suite(tmp_path, "cifar10", 5000, "{}", "backbones=[chain_tiny]").runs[0]
    monkeypatch.setattr(estimate, "KNOWN_SIZES", {})
    with pytest.raises(UsageError, match="data set 'cifar10' does not say how many images"):
        estimate.split_sizes(cifar)


def test_a_run_costs_its_steps_times_their_seconds_plus_evaluation(tmp_path):
    spec = [r for r in suite(tmp_path).runs if r.method_label == "sequential"][0]
    stages = tuple(estimate.StageTime(f"exit {i}", s) for i, s in enumerate((0.1, 0.2, 0.4)))
    setting = estimate.SettingTime("chain_tiny", "sequential", "fp32", 16, stages, 0.001)
    r = estimate.run_estimate(spec, setting)
    assert r.steps_per_epoch == 10 and r.stage_epochs == (2, 1, 1)  # 4 epochs, 3 stages
    assert r.train_hours == pytest.approx((2 * 0.1 + 0.2 + 0.4) * 10 / 3600)
    assert r.eval_images == 4 * 40 + 40 + 50  # held out every epoch, then held out + test
    assert r.eval_hours == pytest.approx(r.eval_images * 0.001 / 3600)
    assert r.hours == pytest.approx(r.train_hours + r.eval_hours)


def test_phase_one_of_a_mixed_run_is_costed_as_the_dearest_stage(tmp_path):
    runs = suite(tmp_path, "synthetic", 40, "{train_size: 200, test_size: 50, image_size: 16}",
                 "training.epochs=6", "training.regime=mixed", "training.backbone_epochs=2").runs
    spec = [r for r in runs if r.method_label == "sequential"][0]
    stages = tuple(estimate.StageTime(f"exit {i}", s) for i, s in enumerate((0.1, 0.2, 0.4)))
    setting = estimate.SettingTime("chain_tiny", "sequential", "fp32", 16, stages, 0.001)
    r = estimate.run_estimate(spec, setting)
    assert r.stage_epochs == (2, 2, 1, 1)  # phase 1, then 4 epochs over the 3 stages
    assert r.train_hours == pytest.approx((2 * 0.4 + 2 * 0.1 + 0.2 + 0.4) * 10 / 3600)


def test_the_suite_is_timed_once_per_setting_and_adds_up(tmp_path):
    runs = suite(tmp_path).runs
    e = estimate.estimate(runs)
    assert e.device == "cpu" and e.threads == torch.get_num_threads()
    assert [(s.method, len(s.stages)) for s in e.settings] == [
        ("joint", 1), ("boostnet", 1), ("sequential", 3)]  # the 2 seeds share a setting
    assert all(t.seconds_per_step > 0 for s in e.settings for t in s.stages)
    assert [r.run_id for r in e.runs] == [r.run_id for r in runs]
    assert e.hours == pytest.approx(sum(r.hours for r in e.runs))
    for r in e.runs:
        steps = sum(n * r.steps_per_epoch * t.seconds_per_step
                    for n, t in zip(r.stage_epochs, r.setting.stages))
        assert r.train_hours == pytest.approx(steps / 3600)

    printed = estimate.lines(e)
    run_hours = [float(m.group(1)) for line in printed
                 for m in [re.search(r"= ([0-9.]+) h$", line)] if m]
    assert len(run_hours) == len(runs)
    total = float(re.search(r"suite: 6 run\(s\), ([0-9.]+) hours", printed[-1]).group(1))
    assert total == pytest.approx(sum(run_hours), abs=1e-4 * len(runs))
    assert printed[0].startswith("estimate on cpu, ") and "cuda_graphs false" in printed[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_cuda_device_this_machine_lacks_is_refused(tmp_path):
    runs = suite(tmp_path, "synthetic", 40, "{train_size: 200, test_size: 50, image_size: 16}",
                 "training.device=cuda").runs
    with pytest.raises(UsageError, match="training.device is cuda and it has no CUDA GPU"):
        estimate.estimate(runs)


def test_estimate_goes_with_dry_run(tmp_path, capsys, monkeypatch):
    suite(tmp_path)  # writes suite.yaml
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "suite.yaml", "--estimate"]) == 2
    err = capsys.readouterr().err
    assert "--estimate goes with --dry-run" in err and not (tmp_path / "results").exists()


def test_the_quickstart_is_estimated_well_under_a_minute(capsys):
    started = time.perf_counter()
    assert cli.main(["run", str(ROOT / "suites" / "quickstart.yaml"), "--dry-run", "--estimate",
                     "--set", "training.device=cpu"]) == 0
    took = time.perf_counter() - started
    out = capsys.readouterr().out
    assert took < 50, took
    assert "suite: 6 run(s), " in out and out.count(" h\n") == 6
