"""bench.pipeline.runner.run_one: every failure of a run stays in its run (status.json says
failed, with the error and its traceback); an interrupt still stops everything."""
from __future__ import annotations

import pytest

from bench import store
from bench.config import load_suite
from bench.pipeline import runner
from bench.pipeline.distributed import Dist
from bench.pipeline.setup import DataCache

SUITE = """
name: one
dataset:
  name: synthetic
  heldout: 32
  options: {train_size: 96, test_size: 32, image_size: 16, num_classes: 4}
backbones:
  - {name: chain_tiny, overrides: {image_size: 16}}
methods: [joint]
training: {epochs: 1, batch_size: 32, device: cpu}
"""
CODE = {"sha256": "c" * 64, "git_commit": None}


@pytest.fixture
def one(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    folder = store.Suite(tmp_path / "results" / suite.slug)
    ctx = runner.RunContext(folder, DataCache(), Dist(), CODE, None, suite_file=str(path))
    (spec,) = suite.runs
    return spec, ctx, folder.run(spec.run_id)


def explode(*args, **kwargs):
    raise ValueError("a bad thing\nwith a second line")


def test_an_exception_fails_the_run_with_its_error_and_traceback(one, monkeypatch):
    spec, ctx, run = one
    monkeypatch.setattr(runner, "_train_and_evaluate", explode)
    assert runner.run_one(spec, ctx) == "failed"
    status = store.Run(run.path).status
    assert status["state"] == "failed" and status["fingerprint"] == CODE["sha256"]
    assert status["error"] == "ValueError: a bad thing\nwith a second line"
    assert "in explode" in status["traceback"]
    assert status["traceback"].rstrip().endswith("with a second line")
    assert store.Run(run.path).config["run_id"] == spec.run_id


def test_an_interrupt_goes_through_and_is_recorded(one, monkeypatch):
    spec, ctx, run = one

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_train_and_evaluate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        runner.run_one(spec, ctx)
    status = store.Run(run.path).status  # resumed by the next bench run
    assert status["state"] == "interrupted" and status["epoch"] == 0 and not status["error"]


def test_a_run_that_cannot_write_done_is_failed(one, monkeypatch):
    spec, ctx, run = one
    real = store.Run.set_status

    def full_disk(self, state, **kw):
        if state == "done":
            raise OSError(28, "No space left on device")
        real(self, state, **kw)

    monkeypatch.setattr(store.Run, "set_status", full_disk)
    assert runner.run_one(spec, ctx) == "failed"
    status = store.Run(run.path).status
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert store.Run(run.path).metrics is not None  # what was computed is kept


def test_a_failure_that_cannot_be_recorded_is_said(one, monkeypatch, caplog):
    spec, ctx, run = one

    def read_only(self, state, **kw):
        raise PermissionError(13, "Permission denied", str(self.file("status.json")))

    monkeypatch.setattr(store.Run, "set_status", read_only)
    assert runner.run_one(spec, ctx) == "failed"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "bench.pipeline"]
    assert line.startswith(f"{spec.run_id} failed (PermissionError: [Errno 13] Permission")
    assert "could not be recorded in its status.json" in line
