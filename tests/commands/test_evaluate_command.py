"""bench evaluate --checkpoint / --logits: a suite's run evaluated from a file instead of
training, stored and reported like any other, marked as imported."""
import json
import math
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


def _hand_arrays(scale: float = 5.0) -> dict:
    """Logits by hand, no training: 3 exits, 4 classes, every exit right on every image
    (the true class scores ``scale``, the others 0)."""
    out = {}
    for split, m in (("heldout", 48), ("test", 40)):
        targets = torch.arange(m) % 4
        logits = torch.zeros(3, m, 4)
        logits[:, torch.arange(m), targets] = scale
        out.update({f"{split}_logits": logits, f"{split}_targets": targets})
    return {**out, "exit_mmacs": torch.tensor([1.0, 2.0, 3.0])}


@pytest.mark.parametrize("change, words", [
    (lambda a: a["test_logits"].fill_(math.nan), "test_logits must be finite; 480 of 480"),
    (lambda a: a["heldout_logits"][1, 2, 3].fill_(math.inf),
     "heldout_logits must be finite; 1 of 576 values are not (the first: inf at exit 2, "
     "image 2, class 3)"),
    (lambda a: a.update(exit_mmacs=torch.tensor([1.0, 2.0, math.inf])),
     "exit_mmacs must be finite"),
    (lambda a: a.update(test_logits=torch.zeros(3, 0, 4), test_targets=torch.zeros(0).long()),
     "test_logits holds no image"),
])
def test_logits_that_cannot_give_metrics_are_refused_and_leave_no_run(tmp_path, capsys,
                                                                      change, words):
    arrays = _hand_arrays()
    change(arrays)
    path = tmp_path / "bad.pt"
    torch.save(arrays, path)
    code, folder = _evaluate(tmp_path, "--logits", str(path))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not folder.exists() or store.Suite(folder).folders == []


def test_logits_beyond_float16_are_stored_in_float32(tmp_path, capsys):
    path = tmp_path / "big.pt"
    torch.save(_hand_arrays(scale=9e4), path)  # float16 would make them infinite
    code, folder = _evaluate(tmp_path, "--logits", str(path))
    assert code == 0, capsys.readouterr().err
    run = _imported(folder)
    assert run.load_predictions()["test"]["logits"].dtype == torch.float32
    assert [a["top1"] for a in run.metrics["anytime"]] == [100.0] * 3
    assert all(b["accuracy"] == 100.0 for b in run.metrics["budgeted"])
    small = tmp_path / "small.pt"
    torch.save(_hand_arrays(), small)
    assert _evaluate(tmp_path, "--logits", str(small))[0] == 0
    (run,) = [r for r in store.Suite(folder).runs if r.imported]  # the newest import alone
    assert run.imported["file"] == str(small.resolve())
    assert run.load_predictions()["test"]["logits"].dtype == torch.float16


TRUST = """\
evaluation:
  criteria: [max_softmax, entropy]
  risk_control: {losses: [accuracy_gap], procedures: [ltt], epsilons: [0.05, 0.2],
                 repeats: 5}
  prediction_sets: {alphas: [0.1]}
"""


def test_imported_logits_get_the_trustworthy_exit_blocks(trained, tmp_path, capsys):
    """Logits from elsewhere (another paper's released logits, say) get anytime quality,
    risk control per exit rule and prediction sets, fitted on the file's held-out logits."""
    path = tmp_path / "logits.pt"
    torch.save(_logit_arrays(trained), path)
    suite = suite_file(tmp_path)
    suite.write_text(suite.read_text() + TRUST)
    results = tmp_path / "imported-results"
    code = cli.main(["evaluate", str(suite), "--results", str(results), "--no-report",
                     "--logits", str(path)])
    assert code == 0, capsys.readouterr().err
    metrics = _imported(results / "tiny").metrics
    for block in [metrics] + metrics["rules"]:
        rc = block["risk_control"]
        assert rc["heldout_images"] == 48 and rc["test_images"] == 40
        assert [(r["loss"], r["procedure"], r["epsilon"]) for r in rc["results"]] == \
            [("accuracy_gap", "ltt", 0.05), ("accuracy_gap", "ltt", 0.2)]
        assert rc["validity"]["repeats"] == 5 and len(rc["validity"]["rows"]) == 2
        quality = block["anytime_quality"]
        assert [p["alpha"] for p in quality["prediction_sets"]] == [0.1]
        assert len(quality["exits"]) == 3
    assert [r["criterion"] for r in metrics["rules"]] == ["max_softmax", "entropy"]
    assert metrics["risk_control"] == metrics["rules"][0]["risk_control"]


def test_a_bad_risk_control_section_is_one_line_and_exit_2(trained, tmp_path, capsys):
    path = tmp_path / "logits.pt"
    torch.save(_logit_arrays(trained), path)
    suite = suite_file(tmp_path)
    suite.write_text(suite.read_text() + "evaluation: {risk_control: {epsilons: [0.1, 1.2]}}\n")
    code = cli.main(["evaluate", str(suite), "--results", str(tmp_path / "r"), "--no-report",
                     "--logits", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == (f"error: {suite}: evaluation.risk_control.epsilons[1]: expected a "
                      "number < 1, found 1.2 (float)")
    assert not (tmp_path / "r" / "tiny").exists() or not any(
        p.is_dir() for p in (tmp_path / "r" / "tiny").iterdir())
