"""``bench run`` at scale and when stopped: many seeds build each run's data when the run
starts (not every seed's before the first run), the dry run counts the runs, and SIGTERM
during training ends the command as Ctrl-C does, with the run recorded as interrupted."""
from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import yaml

import bench.data
from bench import cli
from bench.commands import run as run_command
from bench.pipeline import runner

ROOT = Path(__file__).resolve().parents[2]
SUITE = {"name": "seeds", "dataset": {"name": "synthetic", "heldout": 16,
                                      "options": {"train_size": 48, "test_size": 16,
                                                  "image_size": 8, "num_classes": 2}},
         "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 8}}],
         "methods": ["joint"], "seeds": [0, 1, 2, 3],
         "training": {"epochs": 1, "batch_size": 16, "device": "cpu"}}


def write(tmp_path: Path, raw: dict) -> str:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_each_runs_data_is_built_when_it_starts(tmp_path, monkeypatch):
    built = []  # a weak reference to every split built
    load = bench.data.load

    def counting(*args, **kwargs):
        splits = load(*args, **kwargs)
        built.append(weakref.ref(splits))
        return splits

    at_start = []  # (splits built, splits alive) when each run starts
    run_one = runner.run_one

    def watching(spec, ctx):
        gc.collect()
        at_start.append((len(built), sum(ref() is not None for ref in built)))
        return run_one(spec, ctx)

    monkeypatch.setattr(bench.data, "load", counting)
    monkeypatch.setattr(runner, "run_one", watching)
    assert cli.main(["run", write(tmp_path, SUITE), "--results", str(tmp_path / "results"),
                     "--no-report", "--quiet"]) == 0
    # Before run k starts: the data of run k - 1 alone (the first run's were built to check
    # that the data exist, and it uses them). Before, every seed's data were built first.
    assert at_start == [(1, 1), (1, 1), (2, 1), (3, 1)]
    gc.collect()
    assert len(built) == 4 and sum(ref() is not None for ref in built) <= 1


def test_the_dry_run_counts_the_runs_and_warns_past_its_limit(tmp_path, monkeypatch, capsys):
    suite = write(tmp_path, SUITE)
    assert cli.main(["run", suite, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "4 run(s) over 4 seed(s); each run's data is built when the run starts" in out.out
    assert "warning" not in out.err
    monkeypatch.setattr(run_command, "MANY_RUNS", 3)
    assert cli.main(["run", suite, "--dry-run"]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: 4 runs, more than 3: ")
    assert not (tmp_path / "results").exists()


def status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (OSError, ValueError):  # not written yet, or replaced right now
        return {}


def test_sigterm_during_training_records_the_run_as_interrupted(tmp_path):
    raw = {**SUITE, "seeds": [0], "training": {**SUITE["training"], "epochs": 2000}}
    suite = write(tmp_path, raw)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", suite, "--no-report",
                             "--quiet"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        runs = tmp_path / "results" / "seeds"
        while not any(status(r).get("epoch", 0) >= 1 for r in runs.glob("chain_tiny--*")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() - started < 120, "training never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err  # as for Ctrl-C
    assert err.splitlines()[-1] == "interrupted: rerun the same command to resume"
    assert "Traceback" not in err
    (run,) = runs.glob("chain_tiny--*")
    said = status(run)
    assert said["state"] == "interrupted" and 1 <= said["epoch"] < 2000, said
