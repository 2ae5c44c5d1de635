"""bench latency: real early exits on a finished run, timed; latency.json's contract."""
import json
import sys
from pathlib import Path

import pytest
import torch

from bench import cli, store
from bench.errors import UsageError
from bench.evaluate import forced_exit
from bench.inference import early_exit
from bench.pipeline import latency as L
from bench.pipeline.restore import restore, thresholds_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/run_fixtures.py
from run_fixtures import finished_run  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("latency"))


def _agreement_keys(tree, path=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from ([f"{path}{k}"] if k.startswith("agreement") else [])
            yield from _agreement_keys(v, f"{path}{k}.")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _agreement_keys(v, f"{path}{i}.")


@pytest.mark.parametrize("batch_size", [1, 16])
def test_cli_writes_latency_json_with_agreement_per_budget(run_dir, batch_size, capsys):
    code = cli.main(["latency", str(run_dir), "--batch-size", str(batch_size), "--threads", "1",
                     "--warmup", "1", "--repeats", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "fixed budgets" in out and "every image to exit k" in out
    result = json.loads((run_dir / "latency.json").read_text())
    assert store.Run(run_dir).latency == result
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert result["batch_size"] == batch_size and result["threads"] == 1
    assert result["images"] == 40 and result["device"] == "cpu"
    assert len(result["load_before"]) == 3 and result["machine"]["threads"] == 1
    assert [e["exit"] for e in result["exits"]] == [1, 2, 3]
    assert len(result["budgets"]) == len(metrics["budgeted"]) == 2
    for b, m in zip(result["budgets"], metrics["budgeted"]):
        assert b["agreement"] == 1.0
        assert 0.0 <= b["agreement_saved"] <= 1.0
        assert b["saved_differences"] == round((1 - b["agreement_saved"]) * 40)
        assert b["saved_differences_near_threshold"] == b["saved_differences"]
        assert b["thresholds"] == m["thresholds"]
        assert sum(b["exit_shares"]) == pytest.approx(1.0)
        assert 0 < b["median_ms"] <= b["p95_ms"] and b["mean_ms"] > 0
        assert b["speedup"] == pytest.approx(result["exits"][-1]["mean_ms"] / b["mean_ms"])
        assert b["speedup_median"] == pytest.approx(result["exits"][-1]["median_ms"]
                                                    / b["median_ms"])
        if b["saved_differences"] == 0:  # same decisions as the saved-logit evaluation
            assert b["accuracy"] == pytest.approx(m["accuracy"])
            assert b["mmacs"] == pytest.approx(m["mmacs"])
    per_budget = [f"budgets.{i}.{k}" for i in range(2) for k in ("agreement",
                                                                 "agreement_saved")]
    top = {k: v for k, v in result.items() if k != "measurements"}
    assert sorted(_agreement_keys(top)) == per_budget
    (kept,) = [m for m in result["measurements"] if m["batch_size"] == batch_size]
    assert kept == top and sorted(_agreement_keys(kept)) == per_budget


def test_measured_decisions_are_early_exit_on_the_test_images(run_dir):
    r = restore(run_dir)
    settings = L.Settings(batch_size=7, warmup=0, repeats=1, images=20)
    result, decisions = L.measure(r, settings)
    batches, targets = L.test_images(r, settings, torch.device("cpu"), None)
    assert [len(b) for b in batches] == [7, 7, 6] and len(targets) == 20 == result["images"]
    for entry in r.budgets:
        real = early_exit(r.model, r.method.combine, thresholds_of(entry), torch.cat(batches))
        got = decisions[float(entry["budget_mmacs"])]
        assert torch.equal(got[0], real[0]) and torch.equal(got[1], real[1])


def test_forced_exit_sends_everyone_to_exit_k(run_dir):
    r = restore(run_dir)
    x = torch.cat(L.test_images(r, L.Settings(images=8), torch.device("cpu"), None)[0])
    for k in range(3):
        _, exits, _ = early_exit(r.model, r.method.combine, forced_exit(k, 3), x)
        assert exits.tolist() == [k] * 8


def test_near_threshold_counts_thresholds_between_the_two_confidences():
    now = torch.tensor([[0.50, 0.70], [0.9, 0.9]], dtype=torch.float64)
    saved = torch.tensor([[0.52, 0.75], [0.9, 0.9]], dtype=torch.float64)
    assert L.near_threshold(now, saved, [0.51, -1.0]).tolist() == [True, False]
    assert L.near_threshold(now, saved, [0.75, -1.0]).tolist() == [False, True]
    assert L.near_threshold(now, saved, [0.6, 0.9]).tolist() == [False, False]  # last exit


@pytest.mark.parametrize("settings, word", [
    (L.Settings(batch_size=0), "--batch-size"), (L.Settings(threads=0), "--threads"),
    (L.Settings(warmup=-1), "--warmup"), (L.Settings(device="tpu"), "--device"),
    (L.Settings(images=0), "--images")])
def test_bad_settings_name_the_option(settings, word):
    with pytest.raises(UsageError, match=word):
        settings.check()


def test_a_folder_that_is_no_finished_run_is_named(tmp_path, capsys):
    assert cli.main(["latency", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "checkpoint.pt" in err and err.count("\n") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_latency_agrees(run_dir):
    result, _ = L.measure(restore(run_dir), L.Settings(device="cuda", warmup=1, repeats=1))
    assert result["timing"] == "cuda events" and result["machine"]["gpu"]
    assert all(b["agreement"] == 1.0 for b in result["budgets"])


def test_several_batch_sizes_and_both_runtimes_are_kept_side_by_side(run_dir, capsys):
    pytest.importorskip("onnxruntime", reason="--runtime onnxruntime needs the deploy extra")
    code = cli.main(["latency", str(run_dir), "--batch-sizes", "1,8", "--runtime",
                     "pytorch,onnxruntime", "--warmup", "0", "--repeats", "1", "--images", "24"])
    assert code == 0
    out = capsys.readouterr().out
    assert "onnxruntime b8" in out and "speed-up over every image to the last exit" in out
    result = json.loads((run_dir / "latency.json").read_text())
    got = {(m["runtime"], m["batch_size"]): m for m in result["measurements"]}
    assert {("pytorch", 1), ("pytorch", 8), ("onnxruntime", 1), ("onnxruntime", 8)} <= set(got)
    assert result["runtime"] == "pytorch" and result["batch_size"] == 1  # the first on top
    for (runtime, _), m in got.items():
        if m["images"] != 24:
            continue  # kept from an earlier test of this module
        assert m["energy"] == {"available": False, "reason": m["energy"]["reason"]}
        assert all(b["agreement"] == 1.0 for b in m["budgets"])  # same exits as PyTorch's
        if runtime == "onnxruntime":
            assert m["max_abs_logit_difference"] < 1e-4
    # measuring batch 1 again replaces it and keeps the others
    assert cli.main(["latency", str(run_dir), "--warmup", "0", "--repeats", "1", "--images",
                     "8"]) == 0
    again = json.loads((run_dir / "latency.json").read_text())["measurements"]
    assert sum(m["runtime"] == "pytorch" and m["batch_size"] == 1 for m in again) == 1
    assert any(m["runtime"] == "onnxruntime" and m["batch_size"] == 8 for m in again)


@pytest.mark.parametrize("args, word", [
    (["--batch-sizes", "1,x"], "--batch-sizes must be positive integers"),
    (["--batch-sizes", "0,4"], "--batch-sizes must be positive integers"),
    (["--runtime", "tensorrt"], "--runtime must be pytorch or onnxruntime"),
    (["--runtime", "onnxruntime", "--device", "cuda"], "runs the stage graphs on the CPU")])
def test_bad_latency_arguments_are_named(run_dir, args, word, capsys):
    assert cli.main(["latency", str(run_dir), *args]) == 2
    assert word in capsys.readouterr().err


def test_a_run_without_fixed_budgets_still_gets_its_exits_timed(run_dir):
    r = restore(run_dir)
    r.budgets = []
    result, decisions = L.measure(r, L.Settings(warmup=0, repeats=1, images=4))
    assert [e["exit"] for e in result["exits"]] == [1, 2, 3] and result["budgets"] == []
    assert decisions == {}
