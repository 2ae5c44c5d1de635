"""bench export / bench.export.load: one self-contained file whose predict exits early with
the decisions bench latency measures."""
import sys
from pathlib import Path

import pytest
import torch

import bench.export
from bench import cli, evaluate
from bench.pipeline import latency as L
from bench.pipeline.restore import restore

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/run_fixtures.py
from run_fixtures import finished_run  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    run = finished_run(folder)
    out = folder / "deploy" / "model.pt"
    assert cli.main(["export", str(run), "--out", str(out)]) == 0
    return run, out


def test_the_file_loads_with_weights_only_and_says_what_it_holds(exported):
    run, out = exported
    payload = torch.load(out, weights_only=True)
    assert payload["format"] == bench.export.FORMAT
    assert payload["backbone"] == {"name": "chain_tiny", "overrides": {"image_size": 16}}
    assert payload["method"]["name"] == "boostnet"
    assert payload["temperatures"]["ensemble"] == [0.5, 0.5, 0.5]
    assert len(payload["heldout_index_sha256"]) == 64 and payload["code"]["run"]
    assert payload["input"]["size"] == [3, 16, 16] and len(payload["input"]["mean"]) == 3
    assert payload["config"]["run_id"] == run.name
    assert len(payload["curve"]) > 2 and len(payload["budgets"]) == 2


def test_predict_decisions_equal_bench_latency(exported):
    run, out = exported
    model = bench.export.load(out)
    r = restore(run)
    settings = L.Settings(batch_size=1, warmup=0, repeats=1)
    _, decisions = L.measure(r, settings)
    batches, _ = L.test_images(r, settings, torch.device("cpu"), None)
    x = torch.cat(batches)
    for budget in model.budgets:
        for batch_size in (None, 1):
            classes, exits, conf = model.predict(x, budget_mmacs=budget, batch_size=batch_size)
            assert torch.equal(classes, decisions[budget][0])
            assert torch.equal(exits, decisions[budget][1])
            assert conf.shape == (len(x),) and bool(((conf >= 0) & (conf <= 1)).all())


def test_weights_and_predictions_equal_the_run(exported):
    run, out = exported
    model, r = bench.export.load(out), restore(run)
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        expected = r.method.combine(r.model(x))
    for got, want in zip(model(x), expected):
        assert torch.equal(got, want)


def test_other_budgets_use_the_q_curve_fitted_on_heldout(exported):
    run, out = exported
    model = bench.export.load(out)
    cheapest = model.curve[0]["heldout_mmacs"]
    with pytest.raises(bench.export.ExportError, match="below the cheapest"):
        model.thresholds(cheapest * 0.5)
    val = restore(run).run.load_predictions()["heldout"]["logits"].float()
    budget = (model.budgets[0] + model.budgets[1]) / 2
    thresholds = model.thresholds(budget)
    exits = evaluate.assign_exits(val, thresholds)
    spent = float(torch.tensor(model.exit_mmacs, dtype=torch.float64)[exits].mean())
    assert spent <= budget + 1e-9
    better = [c for c in model.curve if spent < c["heldout_mmacs"] <= budget]
    assert not better  # the most expensive point within the budget
    assert model.predict(torch.randn(3, 3, 16, 16))[1].tolist() == [2, 2, 2]  # None: last


def test_a_file_of_something_else_is_refused_by_name(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(bench.export.ExportError, match="not a model exported by bench export"):
        bench.export.load(path)


def _rewritten(exported, tmp_path, change, name="edited.pt"):
    """A copy of the exported file with ``change(payload)`` applied, its sha256 untouched."""
    payload = torch.load(exported[1], weights_only=True)
    change(payload)
    path = tmp_path / name
    torch.save(payload, path)
    return path


def test_a_changed_file_fails_its_checksum_by_name(exported, tmp_path):
    assert len(torch.load(exported[1], weights_only=True)["sha256"]) == 64

    def lower_a_threshold(payload):
        payload["budgets"][0]["thresholds"][0] = 0.25

    def touch_a_weight(payload):
        name = next(iter(payload["state_dict"]))
        payload["state_dict"][name].view(-1)[0] += 1.0

    for change in (lower_a_threshold, touch_a_weight):
        path = _rewritten(exported, tmp_path, change)
        with pytest.raises(bench.export.ExportError, match="does not match its sha256") as err:
            bench.export.load(path)
        assert str(path) in str(err.value)


def test_non_finite_thresholds_are_refused_naming_the_budget(exported, tmp_path):
    budget = torch.load(exported[1], weights_only=True)["budgets"][1]["budget_mmacs"]

    def nan_threshold(payload):  # an edit that also recomputes the checksum
        payload["budgets"][1]["thresholds"][1] = float("nan")
        payload["sha256"] = bench.export.content_sha256(payload)

    path = _rewritten(exported, tmp_path, nan_threshold)
    with pytest.raises(bench.export.ExportError,
                       match=rf"budget {budget} MMACs: the threshold of exit 2 is nan"):
        bench.export.load(path)
    # and bench.export.save refuses to write one in the first place
    payload = torch.load(exported[1], weights_only=True)
    content = {k: v for k, v in payload.items() if k not in ("format", "sha256")}
    content["curve"][0]["thresholds"][0] = float("inf")
    out = tmp_path / "never.pt"
    with pytest.raises(bench.export.ExportError, match="q curve's point q=.*exit 1 is inf"):
        bench.export.save(out, content)
    assert not out.exists()


def test_an_export_without_a_checksum_is_refused(exported, tmp_path):
    def old_format(payload):
        payload["format"] = "boostnet-bench export 1"
        del payload["sha256"]

    path = _rewritten(exported, tmp_path, old_format)
    with pytest.raises(bench.export.ExportError, match="without a checksum; export the run"):
        bench.export.load(path)
