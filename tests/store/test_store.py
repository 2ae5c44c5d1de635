"""bench.store: one run folder and one suite folder, written and read back."""
from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
import torch

from bench import store
from bench.fileio import UnreadableFile
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


def _runs_in_states(tmp_path, states: list[str]) -> store.Suite:
    suite = store.Suite(tmp_path / "s")
    suite.write_suite({"name": "s"}, [f"r{i}" for i in range(4)])
    for i, state in enumerate(states):
        run = suite.run(f"r{i}")
        run.write_config({"run_id": f"r{i}", "method": {"name": "m", "label": "m"}, "seed": i})
        run.set_status(state, epoch=1, epochs=2, fingerprint="abc")
    return store.Suite(suite.path)


@pytest.mark.parametrize("states, state, text", [
    # bench run --only ran half of the suite: nothing is running the rest
    (["done", "done"], "partial", "2/4 runs done, none running"),
    (["done", "done", "running"], "running", "2/4 runs done, 1 running"),
    (["done", "interrupted"], "interrupted", "1/4 runs done, 1 interrupted, none running"),
    (["done", "interrupted", "running"], "running", "1/4 runs done, 1 interrupted, 1 running"),
    (["done", "failed", "interrupted"], "failed",
     "1/4 runs done, 1 failed, 1 interrupted, none running"),
    ([], "pending", "0/4 runs done, none running"),
    (["done"] * 4, "done", "4/4 runs done"),
])
def test_suite_state_says_whether_anything_runs(tmp_path, states, state, text):
    suite = _runs_in_states(tmp_path, states)
    assert (suite.state, suite.status_text) == (state, text)


def test_suite_json_holds_the_run_count_and_summary_is_rebuilt(tmp_path):
    suite = store.Suite(tmp_path / "s")
    suite.write_suite({"name": "My suite"}, ["a", "b", "c"])
    a = suite.run("a")
    a.write_config({"run_id": "a", "method": {"name": "m", "label": "m"}, "seed": 0})
    a.set_status("failed", epoch=0, epochs=1, fingerprint="abc", error="boom")
    fresh = store.Suite(suite.path)
    assert fresh.total == 3 and fresh.name == "My suite" and [r.run_id for r in fresh.runs] == ["a"]
    assert fresh.status_text == "0/3 runs done, 1 failed, none running"
    assert fresh.state == "failed"
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


def finished_run(suite: store.Suite, run_id: str, top1: float) -> store.Run:
    run = suite.run(run_id)
    run.write_config({"run_id": run_id, "backbone": {"name": "b", "label": "b"},
                      "method": {"name": "m", "label": "m"}, "seed": 0})
    run.write_metrics({"anytime": [{"exit": 1, "mmacs": 1.0, "top1": top1, "top5": 90.0}],
                       "budgeted": []})
    run.set_status("done", epoch=1, epochs=1, fingerprint="abc")
    return run


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("bench")]


@pytest.mark.parametrize("content, why", [
    ('{"anytime": [{"exit": 1', "invalid JSON"),
    ("", "invalid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ("[1, 2]", "unexpected content: the file is an array, expected an object"),
    ('{"anytime": "fast"}', "anytime is 'fast', expected an array"),
    ('{"anytime": [], "budgeted": [3]}', "budgeted[0] is 3, expected an object"),
    ('{"anytime": [{"exit": 1, "top1": "abc"}]}',
     "anytime[0].top1 is 'abc', expected a number or null"),
    ('{"anytime": [], "curve": [{"q": "x"}]}', "curve[0].q is 'x', expected a number"),
])
def test_unreadable_metrics_are_named_and_never_replaced_by_old_summary_rows(
        tmp_path, caplog, content, why):
    suite = store.Suite(tmp_path / "s")
    good, bad = finished_run(suite, "good", 50.0), finished_run(suite, "bad", 60.0)
    suite.write_summary()  # summary.csv now holds bad's rows (top1 60)
    path = bad.file(files.METRICS)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    fresh = store.Suite(suite.path)
    rows = fresh.rows
    assert set(rows["run_id"]) == {"good"} and list(rows["top1"]) == [50.0]
    (line,) = set(warnings_of(caplog))
    assert str(path) in line and why in line and "left out" in line
    assert not store.Run(bad.path).is_done() and store.Run(good.path).is_done()
    rebuilt = pd.read_csv(fresh.write_summary())
    assert list(rebuilt.loc[rebuilt.run_id == "bad", "kind"]) == ["run"]


def test_summary_csv_is_used_only_for_runs_without_a_folder(tmp_path, caplog):
    suite = store.Suite(tmp_path / "s")
    finished_run(suite, "a", 50.0)
    finished_run(suite, "gone", 70.0)
    suite.write_summary()
    shutil.rmtree(suite.path / "gone")
    assert sorted(store.Suite(suite.path).rows["run_id"]) == ["a", "gone"]
    (suite.path / files.SUMMARY).write_text("run_id,kind\ngone,exit\n")  # no top1 column...
    assert list(store.Suite(suite.path).rows["run_id"]) == ["a"]
    assert any("summary.csv is unreadable (no column suite" in w for w in warnings_of(caplog))


@pytest.mark.parametrize("name, content, why", [
    ("status.json", '{"state": 5}', "state is 5, expected a string or null"),
    ("config.json", '{"backbone": {"name": 3}}', "backbone.name is 3, expected a string"),
    ("config.json", '{"seed": 1.5}', "seed is 1.5, expected an integer or null"),
    ("costs.json", '{"mmacs": "x"}', "mmacs is 'x', expected an array"),
    ("environment.json", '{"code": 3}', "code is 3, expected an object or null"),
    ("history.csv", "epoch,exit\n1,1\nx,2\n",
     "column epoch holds 'x' (line 3), expected numbers"),
])
def test_files_that_parse_but_hold_something_else_are_unreadable(tmp_path, caplog, name,
                                                                   content, why):
    run = finished_run(store.Suite(tmp_path / "s"), "a", 50.0)
    run.write_history([{"epoch": 1, "exit": 1}])
    run.file(name).write_text(content)
    fresh = store.Run(run.path)
    _ = (fresh.status, fresh.config, fresh.costs, fresh.environment, fresh.history)
    (line,) = warnings_of(caplog)
    assert line.startswith(f"{run.file(name)} is unreadable (") and why in line, line
    assert name in fresh.unreadable()


def test_unreadable_history_environment_and_best_trials_are_named(tmp_path, caplog):
    suite = store.Suite(tmp_path / "s")
    run = finished_run(suite, "a", 50.0)
    run.file(files.HISTORY).write_text("not,a,history\n")
    run.file(files.ENVIRONMENT).write_text("{")
    suite.tuning_dir.mkdir()
    suite.best_file("study").write_text('{"options": ')
    fresh = store.Run(run.path)
    assert fresh.history is None and fresh.environment == {}
    assert store.Suite(suite.path).best_trials() == []
    said = " | ".join(warnings_of(caplog))
    for name, why in [("history.csv", "no column epoch, exit"), ("environment.json",
                      "invalid JSON"), ("study.json", "invalid JSON")]:
        assert f"{name} is unreadable ({why}" in said


def test_unreadable_predictions_read_as_none_with_one_line(tmp_path, caplog):
    run = store.Run(tmp_path / "r")
    assert run.read_predictions() is None and warnings_of(caplog) == []  # missing: quiet
    run.path.mkdir()
    run.file(files.PREDICTIONS).write_bytes(b"PK\x03\x04 truncated")
    assert run.read_predictions() is None
    (line,) = warnings_of(caplog)
    assert "predictions.pt is unreadable (not a readable torch file" in line
    with pytest.raises(UnreadableFile):
        run.load_predictions()


def test_tidy_deletes_temporaries_and_sets_broken_files_aside(tmp_path):
    suite = store.Suite(tmp_path / "s")
    run = finished_run(suite, "a", 50.0)
    run.file(files.STATUS).write_text('{"state": "do')
    for name in (".metrics.json.x1y2z3ab.tmp", ".predictions.pt.abcdefgh.tmp"):
        run.file(name).write_text("half")
    run.file(".notes.tmp").write_text("not ours")  # not a temporary file of a run file
    store.save_checkpoint(run.checkpoint_path, model={}, optimizer={}, scaler={}, stage=0,
                          epoch=1, history=[])
    run.file(files.PREDICTIONS).write_bytes(run.checkpoint_path.read_bytes()[:-30])
    removed, moved = run.tidy()
    assert sorted(p.name for p in removed) == [".metrics.json.x1y2z3ab.tmp",
                                                ".predictions.pt.abcdefgh.tmp"]
    assert [(name, why.split(":")[0]) for name, why, _ in moved] == [
        ("predictions.pt", "not a readable torch file"), ("status.json", "invalid JSON")]
    where = moved[1][2]
    assert where.name.startswith("status.json.corrupt-") and where.read_text() == '{"state": "do'
    assert sorted(p.name for p in run.path.iterdir()) == [
        ".notes.tmp", "checkpoint.pt", "config.json", "metrics.json",
        moved[0][2].name, where.name]
    assert run.state == "pending" and run.tidy() == ([], [])  # nothing left to do


def test_suite_tidy_handles_suite_json_and_summary(tmp_path):
    suite = store.Suite(tmp_path / "s")
    suite.write_suite({"name": "S"}, ["a"])
    (suite.path / ".summary.csv.abcd1234.tmp").write_text("half")
    (suite.path / files.SUMMARY).write_text('suite,run_id\n"S,a\n')
    (suite.path / files.SUITE).write_text("{")
    removed, moved = suite.tidy()
    assert [p.name for p in removed] == [".summary.csv.abcd1234.tmp"]
    assert sorted(name for name, _, _ in moved) == ["suite.json", "summary.csv"]
    assert suite.config == {} and not (suite.path / files.SUITE).exists()


def test_checkpoints_of_something_else_are_unreadable(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "epoch": "3"}, path)
    with pytest.raises(UnreadableFile, match="not a checkpoint of this harness"):
        store.load_checkpoint(path)
    torch.save([1, 2], path)
    with pytest.raises(UnreadableFile, match="no model, optimizer"):
        store.load_checkpoint(path)
    assert store.Run(tmp_path).checkpoint_epoch() == 0


def test_status_records_the_traceback_of_a_failure(tmp_path):
    run = store.Run(tmp_path / "r")
    run.set_status("failed", epoch=0, epochs=1, fingerprint="abc", error="ValueError: x",
                   traceback="Traceback (most recent call last):\n ...")
    status = store.Run(run.path).status
    assert status["error"] == "ValueError: x" and status["traceback"].startswith("Traceback")
