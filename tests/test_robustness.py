"""An adversarial user: bad inputs get one clear line (exit 2), and `bench run` killed at
seeded random moments (start-up, training, evaluation, report) and run again ends with the
metrics of an uninterrupted run, and no temporary, partial or corrupt file left."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import cli
from bench.config import load_suite
from suite_fixtures import TINY

ROOT = Path(__file__).resolve().parents[1]


# -- bad inputs: exit 2, one line naming what is wrong --------------------------------------

def alias_bomb() -> str:
    """The 441-byte kind of suite that took 25 s and 1 GB: each level repeats the last 9x."""
    lines = ["name: bomb", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, key in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{key}: &{key} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


ADVERSARIAL = [
    # (what, files to write {name: text}, argv, text the one line must hold)
    ("alias bomb", {"bomb.yaml": alias_bomb()}, ["run", "bomb.yaml"],
     "bomb.yaml: line 3, column 8: invalid YAML: found the alias *a: aliases are not allowed"),
    ("seed 10**30", {"s.yaml": TINY.replace("seeds: [0]", f"seeds: [{10 ** 30}]")},
     ["run", "s.yaml"], "s.yaml: seeds[0]: expected a seed: an integer in [0, 2**32)"),
    ("seed 2**32 by --set", {"s.yaml": TINY}, ["run", "s.yaml", "--set", "seeds=[4294967296]"],
     "seeds[0]: expected a seed"),
    ("--results is a file", {"s.yaml": TINY, "f": ""}, ["run", "s.yaml", "--results", "f"],
     "--results f: not a folder"),
    ("--reports is a file", {"s.yaml": TINY, "f": ""},
     ["run", "s.yaml", "--reports", "f", "--results", "r"], "--reports f: not a folder"),
    ("report ..", {}, ["report", "..", "--results", "."],
     "'..' is neither a suite file nor a suite folder name"),
    ("results ../..", {}, ["results", "../..", "--results", "."],
     "'../..' is neither a suite file nor a suite folder name"),
    ("results of no results folder", {}, ["results", "tiny", "--results", "nowhere"],
     "--results nowhere: no such folder"),
    ("deep nesting", {"d.yaml": "name: d\nx: " + "[" * 5000 + "]" * 5000 + "\n"},
     ["run", "d.yaml"], "d.yaml: line 2, column 103: invalid YAML: nested more than 100"),
    ("merge key", {"m.yaml": TINY + "x: &x {epochs: 1}\ntune: {<<: *x}\n"}, ["run", "m.yaml"],
     "found the alias *x"),
    ("plugin calls sys.exit(0)", {"s.yaml": TINY + "plugins: [quits.py]\n",
                                  "quits.py": "import sys\nsys.exit(0)\n"}, ["run", "s.yaml"],
     "s.yaml: plugins[0]: cannot import plugin '{tmp}/quits.py': it called sys.exit(0) "
     "while being imported"),
    ("plugin parses arguments", {"s.yaml": TINY + "plugins: [cli.py]\n", "cli.py":
                                 "import argparse\nargparse.ArgumentParser().parse_args()\n"},
     ["run", "s.yaml"], "it called sys.exit(2) while being imported (it printed: 'usage:"),
]


@pytest.mark.parametrize("what, files, argv, line", ADVERSARIAL,
                         ids=[a[0] for a in ADVERSARIAL])
def test_bad_inputs_exit_2_with_one_line(tmp_path, monkeypatch, capsys, what, files, argv,
                                         line):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench", *argv])  # what a plugin parsing them sees
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    started = time.perf_counter()
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err, line = captured.err, line.format(tmp=tmp_path)
    assert err.startswith("error: ") and err.count("\n") == 1 and line in err, err
    assert captured.out == ""
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "results").exists()


def test_a_run_folder_that_is_a_link_is_refused_and_nothing_is_written_there(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(TINY)
    (spec,) = [r for r in load_suite("s.yaml").runs if r.method_label == "joint"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text('{"run_id": "mine"}')
    link = Path("results") / "tiny" / spec.run_id
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    assert cli.main(["run", "s.yaml", "--only", "*joint*", "--no-report", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{link} is a symbolic link (to {outside}): refusing to write through it" in err
    assert "1 run(s) failed" in err
    assert sorted(p.name for p in outside.iterdir()) == ["config.json"]
    assert (outside / "config.json").read_text() == '{"run_id": "mine"}'


def test_a_results_folder_of_another_suite_is_not_taken_over(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(TINY.replace("name: tiny", "name: tiny!"))  # slug tiny
    (tmp_path / "results" / "tiny").mkdir(parents=True)
    (tmp_path / "results" / "tiny" / "suite.json").write_text('{"name": "tiny"}')
    assert cli.main(["run", "s.yaml", "--no-report", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the folder of suite 'tiny!' holds the results of " \
        "suite 'tiny'" in err, err
    assert sorted(p.name for p in (tmp_path / "results" / "tiny").iterdir()) == [
        ".summary.lock", "suite.json"]


# -- killed at random moments ----------------------------------------------------------------

def environment(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore", "XDG_CACHE_HOME": str(tmp_path / "cache")}


def bench_run(where: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench", "run", str(where.parent / "tiny.yaml"),
                             "--quiet"], cwd=where, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def statuses(where: Path, since: float = 0.0) -> list[dict]:
    """The runs' status.json written after ``since`` (a time stamp)."""
    out = []
    for path in where.glob("results/tiny/*/status.json"):
        try:
            if path.stat().st_mtime > since:
                out.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # replaced right now
            pass
    return out


def written_since(where: Path, pattern: str, since: float) -> bool:
    return any(p.stat().st_mtime > since for p in where.glob(pattern))


# When to kill, per phase: a sign that this process reached it (a file it wrote), then a
# seeded random delay.
PHASES = {
    "start-up": (lambda w, t0: True, 2.5),
    "training": (lambda w, t0: written_since(w, "results/tiny/*/checkpoint.pt", t0), 0.4),
    "evaluation": (lambda w, t0: any(s["state"] == "running" and s["epoch"] == s["epochs"]
                                     for s in statuses(w, t0)), 0.15),
    "report": (lambda w, t0: written_since(w, "reports/**/*", t0), 0.5),
}


def kill_during(phase: str, where: Path, env: dict, rng: random.Random) -> str:
    """Start `bench run`, wait for ``phase``, SIGKILL it a seeded random moment later;
    what happened, for the failure message."""
    reached, delay = PHASES[phase]
    started = time.time()
    proc = bench_run(where, env)
    while not reached(where, started):
        if proc.poll() is not None:
            return f"{phase}: ended before it was reached (exit {proc.returncode})"
        assert time.time() - started < 120, f"{phase} never came"
        time.sleep(0.01)
    time.sleep(rng.uniform(0, delay))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return f"{phase}: killed {time.time() - started:.2f} s after the start"


def check_every_file_is_whole(where: Path) -> None:
    """No temporary file, nothing set aside as corrupt, and every file reads."""
    leftovers = [p for p in where.rglob("*") if p.name.endswith(".tmp") or ".corrupt-" in p.name]
    assert leftovers == []
    for path in where.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            pd.read_csv(path)
        elif path.suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=True)


def metrics_and_summary(where: Path) -> tuple[dict, str]:
    metrics = {p.parent.name: json.loads(p.read_text())
               for p in sorted(where.glob("results/tiny/*/metrics.json"))}
    return metrics, (where / "results" / "tiny" / "summary.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2026])
def test_killed_at_random_moments_then_rerun_equals_an_uninterrupted_run(tmp_path, seed):
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = environment(tmp_path)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    done = bench_run(straight, env)
    assert done.wait(timeout=300) == 0, done.stderr.read()
    done.stderr.close()

    rng = random.Random(seed)
    log = [kill_during(phase, killed, env, rng) for phase in PHASES]
    log += [kill_during(rng.choice(list(PHASES)), killed, env, rng) for _ in range(2)]
    # A kill in the middle of a write (a few milliseconds) leaves a temporary file; the
    # kills above rarely land there, so leave some as such a kill would.
    folder = killed / "results" / "tiny"
    for where in [folder, *(p for p in folder.iterdir() if p.is_dir())]:
        name = "summary.csv" if where == folder else rng.choice(["metrics.json", "status.json"])
        (where / f".{name}.k1ll3d{rng.randrange(10)}x.tmp").write_text("{half")
    final = bench_run(killed, env)
    assert final.wait(timeout=300) == 0, (log, final.stderr.read())
    final.stderr.close()

    expected, summary = metrics_and_summary(straight)
    assert len(expected) == 2
    assert metrics_and_summary(killed) == (expected, summary), log
    assert all(s["state"] == "done" for s in statuses(killed))
    assert (killed / "reports" / "index.html").exists()
    check_every_file_is_whole(killed)
