"""Which runs a suite's views use (the current ones: suite.json's run ids and the newest
import of each), how the others are listed, and the folders the store refuses: a suite
folder of another suite's name, run and suite folders that are symbolic links."""
from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from bench import store
from bench.fileio import LinkRefused
from bench.report import tables
from bench.store.suite import SuiteFolderTaken
from report_fixtures import make_run, make_suite


def two_settings(root):
    """Seed 0 of joint trained with 2 epochs (the suite's current settings) and, kept in
    the folder, seed 0 of joint trained with 1 epoch (other settings)."""
    folder = make_suite(root, "s", [{"run_id": "joint-e2-s0", "method": "joint", "seed": 0,
                                     "skill": 2.0, "epochs": 2}], name="s")
    make_run(folder, "joint-e1-s0", method="joint", seed=0, skill=0.5, epochs=1)
    return folder


def test_runs_of_other_settings_are_listed_apart_never_pooled(tmp_path):
    suite = store.Suite(two_settings(tmp_path))
    assert [r.run_id for r in suite.runs] == ["joint-e2-s0"]
    assert [r.run_id for r in suite.other_runs] == ["joint-e1-s0"]
    assert len(suite.folders) == 2
    cmp = tables.comparison(suite)
    assert set(cmp.n) == {1}  # one seed, not the two runs of seed 0 averaged
    alone = tables.comparison(make_suite(tmp_path / "alone", "s", [
        {"run_id": "joint-e2-s0", "method": "joint", "seed": 0, "skill": 2.0, "epochs": 2}]))
    assert cmp["mean"].tolist() == alone["mean"].tolist()
    assert suite.status_text == "1/1 runs done; other settings: 1 run"
    text = tables.format_terminal(cmp, others=suite.others_text())
    assert "seeds per cell: 1" in text and "not in the tables: other settings: 1 run" in text
    chosen = suite.select(["joint-e1-s0"])  # the other settings, on purpose
    assert [r.run_id for r in chosen.runs] == ["joint-e1-s0"]
    assert tables.comparison(chosen)["mean"].tolist() != cmp["mean"].tolist()


def test_summary_rows_of_runs_without_a_folder_count_only_when_current(tmp_path):
    folder = two_settings(tmp_path)
    suite = store.Suite(folder)
    suite.write_summary()  # every run folder's rows, current or not
    assert set(pd.read_csv(folder / "summary.csv").run_id) == {"joint-e1-s0", "joint-e2-s0"}
    for run in ("joint-e1-s0", "joint-e2-s0"):
        (folder / run / "config.json").unlink()
        (folder / run / "status.json").unlink()
    rows = store.Suite(folder).rows
    assert set(rows.run_id) == {"joint-e2-s0"}


def test_only_the_newest_import_of_a_run_counts(tmp_path):
    folder = make_suite(tmp_path, "s", [{"run_id": "r", "method": "joint", "seed": 0}],
                        name="s")
    for i, date in enumerate(["2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00",
                              "2026-02-01T00:00:00+00:00"]):
        make_run(folder, f"r--imported-{i}", method="joint", label="joint [imported]",
                 seed=0, skill=float(i), config={"imported": {
                     "kind": "logits", "replaces_run": "r", "date": date}})
    suite = store.Suite(folder)
    assert [r.run_id for r in suite.runs] == ["r", "r--imported-1"]
    assert [suite.why_other(r) for r in suite.other_runs] == ["earlier import"] * 2
    assert suite.others_text() == "earlier imports: 2 runs"
    cmp = tables.comparison(suite)
    assert set(cmp.n) == {1}  # three imports of seed 0 are not three seeds


def test_a_suite_json_of_another_suite_is_not_overwritten(tmp_path):
    suite = store.Suite(tmp_path / "suite")
    suite.write_suite({"name": "✓✓✓"}, ["a"])
    with pytest.raises(SuiteFolderTaken, match="holds the results of suite '✓✓✓'"):
        store.Suite(tmp_path / "suite").write_suite({"name": "实验二"}, ["b"])
    assert json.loads((tmp_path / "suite" / "suite.json").read_text())["name"] == "✓✓✓"
    store.Suite(tmp_path / "suite").write_suite({"name": "✓✓✓"}, ["c"])  # its own: fine


def test_a_run_folder_that_is_a_link_is_refused_and_nothing_is_written_there(
        tmp_path, caplog):
    folder = make_suite(tmp_path / "results", "s", [{"run_id": "r", "method": "joint"}],
                        name="s")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text('{"run_id": "x"}')
    (folder / "linked").symlink_to(outside)
    run = store.Suite(folder).run("linked")
    for act in (lambda: run.write_config({}), lambda: run.lock_path, run.tidy,
                run.remove_temporary, lambda: run.is_done(),
                lambda: run.set_status("failed", epoch=0, epochs=1, fingerprint="x")):
        with pytest.raises(LinkRefused, match=f"{folder / 'linked'} is a symbolic link "
                                              f"\\(to {outside}\\)"):
            act()
    assert sorted(p.name for p in outside.iterdir()) == ["config.json"]
    with caplog.at_level(logging.WARNING, "bench.store"):
        assert [r.run_id for r in store.Suite(folder).folders] == ["r"]
    assert "linked is a symbolic link; left out" in caplog.text


def test_a_suite_folder_that_is_a_link_is_refused(tmp_path, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "s").symlink_to(outside)
    suite = store.Suite(tmp_path / "results" / "s")
    for act in (lambda: suite.write_suite({"name": "s"}, []), lambda: suite.summary_lock_path,
                lambda: suite.tuning_dir, lambda: suite.run("r").write_config({})):
        with pytest.raises(LinkRefused):
            act()
    assert list(outside.iterdir()) == []
    with caplog.at_level(logging.WARNING, "bench.store"):
        assert store.list_suites(tmp_path / "results") == []
    assert "is a symbolic link; left out" in caplog.text
