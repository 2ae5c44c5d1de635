"""bench.store: one run folder and one suite folder, written and read back."""
from __future__ import annotations

import math

import torch

from bench import store
from bench.store import files


def test_a_run_reads_back_what_it_wrote(tmp_path):
    run = store.Suite(tmp_path / "s").run("r1")
    run.write_config({"run_id": "r1", "backbone": {"name": "b", "label": "bl"},
                      "method": {"name": "m", "label": "ml", "options": {"t": 1.0}}, "seed": 3})
    run.set_status("running", epoch=1, epochs=2, fingerprint="abc")
    run.write_costs([1.5, 2.25], [10, 20], [3, 8, 8])
    run.write_history([{"epoch": 1, "stage": 1, "exit": n, "lr": 0.1, "train_loss": 1.0,
                        "effective_share": 0.5, "heldout_top1": 50.0} for n in (1, 2)])
    preds = {s: {"logits": torch.ones(2, 3, 4, dtype=torch.float16),
                 "targets": torch.arange(3)} for s in ("heldout", "test")}
    run.save_predictions(preds)
    fresh = store.Run(run.path)
    assert (fresh.backbone, fresh.backbone_name, fresh.method, fresh.method_name) == \
        ("bl", "b", "ml", "m")
    assert fresh.seed == 3 and fresh.method_options == {"t": 1.0}
    assert fresh.state == "running" and not fresh.is_done()
    assert fresh.costs == {"mmacs": [1.5, 2.25], "params": [10, 20],
                           "counter": "fvcore multiply-adds (MACs)", "input_size": [3, 8, 8]}
    assert list(fresh.history["exit"]) == [1, 2]
    assert torch.equal(fresh.load_predictions()["test"]["targets"], torch.arange(3))
    assert fresh.summary_rows("S") == [{"suite": "S", "run_id": "r1", "backbone": "bl",
                                        "method": "ml", "seed": 3, "status": "running",
                                        "kind": "run"}]
    run.write_metrics({"anytime": [{"exit": 1, "mmacs": 1.5, "top1": 50.0, "top5": 90.0}],
                       "budgeted": [{"budget_mmacs": 2.0, "accuracy": 60.0, "mmacs": 1.9}]})
    run.set_status("done", epoch=2, epochs=2, fingerprint="abc")
    assert store.Run(run.path).is_done()
    rows = store.Run(run.path).summary_rows("S")
    assert [(r["kind"], r["top1"]) for r in rows] == [("exit", 50.0), ("budget", 60.0)]
    assert math.isnan(rows[1]["top5"]) and math.isnan(rows[0]["budget_mmacs"])
    assert not list(run.path.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_partial_and_unreadable_run_folders_read_as_empty(tmp_path):
    run = store.Run(tmp_path / "half")
    run.path.mkdir()
    (run.path / files.CONFIG).write_text("{not json")
    assert run.config == {} and run.status == {} and run.metrics is None
    assert run.state == "pending" and run.history is None and run.method == "?"
    assert run.summary_rows("S")[0]["kind"] == "run"


def test_checkpoints_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    store.save_checkpoint(path, model={"w": torch.ones(2)}, optimizer={"state": {}},
                          scaler={}, stage=1, epoch=4, history=[{"epoch": 1, "x": 0.5}])
    ckpt = store.load_checkpoint(path)
    assert (ckpt["stage"], ckpt["epoch"], ckpt["history"]) == (1, 4, [{"epoch": 1, "x": 0.5}])
    run = store.Run(tmp_path)
    assert run.checkpoint_epoch() == 4


def test_suite_json_holds_the_run_count_and_summary_is_rebuilt(tmp_path):
    suite = store.Suite(tmp_path / "s")
    suite.write_suite({"name": "My suite"}, ["a", "b", "c"])
    a = suite.run("a")
    a.write_config({"run_id": "a", "method": {"name": "m", "label": "m"}, "seed": 0})
    a.set_status("failed", epoch=0, epochs=1, fingerprint="abc", error="boom")
    fresh = store.Suite(suite.path)
    assert fresh.total == 3 and fresh.name == "My suite" and [r.run_id for r in fresh.runs] == ["a"]
    assert fresh.status_text == "0/3 runs done, 1 failed" and fresh.state == "failed"
    text = fresh.write_summary().read_text().splitlines()
    assert text[0] == ",".join(store.SUMMARY_COLUMNS)
    assert text[1].startswith("My suite,a,?,m,0,failed,run")
    assert store.list_suites(tmp_path) == [suite.path]


def test_stale_runs_and_moving_outputs_aside(tmp_path):
    suite = store.Suite(tmp_path / "s")
    old, new = suite.run("old"), suite.run("new")
    for run, code in ((old, "a" * 64), (new, "b" * 64)):
        run.write_config({"run_id": run.run_id})
        run.write_metrics({"anytime": [], "budgeted": []})
        run.set_status("done", epoch=1, epochs=1, fingerprint=code)
    assert [r.run_id for r in store.Suite(suite.path).stale_runs("b" * 64)] == ["old"]
    assert old.is_stale("b" * 64) and not new.is_stale("b" * 64)
    assert old.made_by_other_code("b" * 64)
    assert not store.Run(tmp_path / "none").made_by_other_code("b")  # never started
    old.lock_path.touch()
    moved = old.move_aside("code-aaaa")
    assert moved.parent == old.path / "previous" and moved.name.endswith("-code-aaaa")
    assert sorted(p.name for p in moved.iterdir()) == ["config.json", "metrics.json",
                                                        "status.json"]
    assert sorted(p.name for p in old.path.iterdir()) == [".lock", "previous"]
    assert not old.is_done() and old.state == "pending"
