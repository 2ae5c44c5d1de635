"""What the executor tests share: a small suite, its runs' metrics from an uninterrupted local
run, and a suite plugin (written per test) that makes workers show their hand: every
checkpoint is logged (process id, run, epoch), the runs wait for each other after their
first epoch (so the test knows they trained at the same time), and one run's first
attempt stops itself with a signal right after a checkpoint (SIGKILL: a dead Ray worker;
SIGUSR2: SLURM's preemption signal, which submitit handles)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

SUITE = {
    "name": "spread",
    "dataset": {"name": "synthetic", "heldout": 64,
                "options": {"train_size": 1088, "test_size": 64, "image_size": 16,
                            "num_classes": 4, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint", "boostnet"],
    "training": {"epochs": 3, "batch_size": 32, "device": "cpu"},
    "budgets": {"fractions": [0.9]},
}

PLUGIN = '''"""Test plugin (bench's executor tests): log checkpoints, meet after epoch 1, stop once."""
import os
import signal
import time
from pathlib import Path

from bench.pipeline import train

EVENTS = Path({events!r})
ARM = Path({arm!r})  # while it exists, the {victim} run stops itself after epoch {epoch}
RUNS = {runs}
_save = train.Trainer._save


def _log(line):
    with EVENTS.open("a") as f:
        f.write(line + "\\n")


def _save_and_show(self, state, stage):
    _save(self, state, stage)
    run = Path(self.checkpoint).parent.name
    _log(f"{{os.getpid()}} {{run}} {{state.epoch}}")
    if state.epoch == 1 and RUNS > 1:  # meet the other runs: they train at the same time
        (EVENTS.parent / f"epoch1-{{run}}").touch()
        deadline = time.time() + 120
        while len(list(EVENTS.parent.glob("epoch1-*"))) < RUNS:
            if time.time() > deadline:
                _log(f"{{os.getpid()}} {{run}} alone")
                break
            time.sleep(0.05)
    if "--{victim}--" in run and state.epoch == {epoch} and ARM.exists():
        ARM.unlink()
        os.kill(os.getpid(), signal.{signal})
        time.sleep(30)  # a handled signal (SIGUSR2) ends the process from its handler


train.Trainer._save = _save_and_show
'''


def write_suite(folder: Path, victim: str | None = None, epoch: int = 1,
                signal: str = "SIGKILL", runs: int = 2, **extra) -> Path:
    """The suite in ``folder``, with the plugin when a ``victim`` method is named."""
    raw = {**SUITE, **extra}
    if victim:
        plugin = folder / "show_plugin.py"
        plugin.write_text(PLUGIN.format(events=str(folder / "events.log"),
                                        arm=str(folder / "arm"), victim=victim, epoch=epoch,
                                        signal=signal, runs=runs))
        (folder / "arm").touch()
        raw["plugins"] = [str(plugin)]
    path = folder / "spread.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def events(folder: Path) -> list[tuple[int, str, str]]:
    """(pid, run id, epoch or 'alone') per checkpoint the plugin saw."""
    lines = (folder / "events.log").read_text().split()
    return [(int(p), r, e) for p, r, e in zip(lines[::3], lines[1::3], lines[2::3])]


def bench(*args, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m bench ...`` on this checkout's code (workers it starts inherit it)."""
    # RAY_AUTH_MODE=token: joining a cluster by its address sends the token Ray keeps in
    # ~/.ray/auth_token (Ray asks for it explicitly there; docs/scaling.md)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore", "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "token"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def metrics(results: Path) -> dict[str, dict]:
    """run id -> metrics.json of every run of the suite."""
    return {p.parent.name: json.loads(p.read_text())
            for p in sorted((results / "spread").glob("*/metrics.json"))}


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("[run ")]


# a tune: section for the shared-study tests (3 one-epoch trials in all)
TUNE = {"trials": 3, "objective": "anytime", "epochs": 1, "pruner": "none"}


def checked_study(tmp_path: Path, stdout: str) -> list:
    """The trials of the one study that the tuning workers shared (results/spread/tuning/
    optuna.db), after the checks both executors must pass."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'results' / 'spread' / 'tuning' / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    numbers = sorted(t.number for t in trials)  # 3 in all, not 3 per worker
    assert numbers == list(range(len(numbers))) and 3 <= len(numbers) <= 4  # (the last may
    # be one over: two workers that end a trial at the same instant each start another)
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.params["temperature"] for t in trials}) == len(trials)  # none twice
    best = json.loads((tmp_path / "results" / "spread" / "tuning" / f"{name}.json").read_text())
    assert best["trial"] == max(trials, key=lambda t: t.value).number
    assert f"study {name}: {len(trials)} complete" in stdout
    return trials
