"""bench evaluate --checkpoint / --logits: a suite's run evaluated from a file instead of
training, stored and reported like any other, marked as imported."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import cli, store

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # tests/run_fixtures.py
from run_fixtures import finished_run, suite_file  # noqa: E402

REFERENCE = TESTS / "data" / "reference" / "boostnet_msdnet_epoch0.pth"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("evaluate"))


def _evaluate(folder, *argv):
    suite = suite_file(folder)
    results = folder / "imported-results"
    code = cli.main(["evaluate", str(suite), "--results", str(results), "--no-report", *argv])
    return code, results / "tiny"


def _imported(suite_folder):
    (run,) = [r for r in store.Suite(suite_folder).runs if r.imported]
    return run


def _same_metrics(a, b):
    assert [e["top1"] for e in a["anytime"]] == [e["top1"] for e in b["anytime"]]
    assert [(e["accuracy"], e["thresholds"]) for e in a["budgeted"]] == \
           [(e["accuracy"], e["thresholds"]) for e in b["budgeted"]]


def test_the_runs_own_checkpoint_gives_the_runs_metrics(trained, tmp_path, capsys):
    code, folder = _evaluate(tmp_path, "--checkpoint", str(trained / "checkpoint.pt"))
    assert code == 0, capsys.readouterr().err
    run = _imported(folder)
    assert run.imported["kind"] == "checkpoint" and run.imported["replaces_run"] == trained.name
    assert run.run_id.startswith(trained.name + "--imported-") and run.state == "done"
    assert run.method == "boostnet [imported]"
    _same_metrics(run.metrics, json.loads((trained / "metrics.json").read_text()))
    summary = (folder / "summary.csv").read_text()
    assert "boostnet [imported]" in summary


def _logit_arrays(trained):
    preds = store.Run(trained).load_predictions()
    costs = json.loads((trained / "costs.json").read_text())["mmacs"]
    return {"heldout_logits": preds["heldout"]["logits"].float(),
            "heldout_targets": preds["heldout"]["targets"],
            "test_logits": preds["test"]["logits"].float(),
            "test_targets": preds["test"]["targets"], "exit_mmacs": torch.tensor(costs)}


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_imported_logits_get_the_same_metrics(trained, tmp_path, suffix, capsys):
    arrays = _logit_arrays(trained)
    path = tmp_path / f"logits{suffix}"
    if suffix == ".pt":
        torch.save(arrays, path)
    else:
        np.savez(path, **{k: v.numpy() for k, v in arrays.items()})
    code, folder = _evaluate(tmp_path, "--logits", str(path))
    assert code == 0, capsys.readouterr().err
    run = _imported(folder)
    assert run.imported["kind"] == "logits" and run.imported["exits"] == 3
    _same_metrics(run.metrics, json.loads((trained / "metrics.json").read_text()))


@pytest.mark.parametrize("change, words", [
    (lambda a: a.pop("test_targets"), "missing key(s) test_targets"),
    (lambda a: a.update(test_logits=a["test_logits"][:2]), "test_logits must be"),
    (lambda a: a.update(exit_mmacs=torch.tensor([3.0, 2.0, 1.0])), "exit_mmacs must be"),
    (lambda a: a.update(heldout_targets=a["heldout_targets"] + 100), "heldout_targets must lie"),
])
def test_a_bad_logits_file_is_named_with_the_key(trained, tmp_path, capsys, change, words):
    arrays = _logit_arrays(trained)
    change(arrays)
    path = tmp_path / "bad.pt"
    torch.save(arrays, path)
    code, folder = _evaluate(tmp_path, "--logits", str(path))
    err = capsys.readouterr().err
    assert code == 2 and words in err and str(path) in err and err.count("\n") == 1
    assert not folder.exists() or not any(r.imported for r in store.Suite(folder).runs)


def test_a_reference_checkpoint_is_evaluated_as_the_suites_run(tmp_path, capsys):
    suite = tmp_path / "ref.yaml"
    suite.write_text(
        "name: ref\ndataset: {name: synthetic, heldout: 40, options: {train_size: 80, "
        "test_size: 40, num_classes: 10}}\nbackbones: [{name: msdnet_tiny, label: ref, "
        "overrides: {n_blocks: 4, head_channels: 16}}]\nmethods: [joint, boostnet]\n"
        "seeds: [0]\ntraining: {epochs: 1, device: cpu}\nbudgets: {fractions: [0.5]}\n")
    argv = ["evaluate", str(suite), "--checkpoint", str(REFERENCE), "--results",
            str(tmp_path / "r"), "--no-report"]
    assert cli.main(argv) == 2  # two runs match
    assert "choose it with --only" in capsys.readouterr().err
    assert cli.main(argv + ["--only", "*joint*"]) == 0
    run = _imported(tmp_path / "r" / "ref")
    assert run.method == "joint [imported]" and len(run.metrics["anytime"]) == 4
    assert run.imported["file"] == str(REFERENCE.resolve())


def test_a_method_with_exit_modules_is_refused_for_a_backbone_checkpoint(trained, tmp_path,
                                                                          capsys):
    suite = suite_file(tmp_path, "imta")
    code = cli.main(["evaluate", str(suite), "--checkpoint", str(trained / "checkpoint.pt"),
                     "--set", "training.epochs=2", "--results", str(tmp_path / "r"),
                     "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "'imta' adds modules at the exits" in err
