"""The local executor with runs tied to their code: a finished run made by other code is
stale (kept, said so, marked by bench results and the report), and --rerun-stale trains it
again from scratch, keeping the old outputs. Runs on a copy of the code, edited between
commands, through the command line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = """
name: tied
dataset:
  name: synthetic
  heldout: 32
  options: {train_size: 96, test_size: 32, image_size: 16, num_classes: 4}
backbones:
  - {name: chain_tiny, overrides: {image_size: 16}}
methods: [joint, boostnet]
training: {epochs: 1, batch_size: 32, device: cpu}
budgets: {fractions: [0.9]}
"""


def bench(code: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def read(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


@pytest.mark.slow
def test_runs_of_other_code_are_stale_until_rerun(tmp_path):
    code = tmp_path / "code"
    for pkg in ("bench", "methods"):
        shutil.copytree(ROOT / pkg, code / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    suite = tmp_path / "tied.yaml"
    suite.write_text(SUITE)
    first = bench(code, "run", str(suite), "--no-report", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    runs = sorted(p for p in (tmp_path / "results" / "tied").iterdir() if p.is_dir())
    assert len(runs) == 2
    before = {r.name: (read(r, "status.json"), read(r, "metrics.json")) for r in runs}
    old = {s["fingerprint"] for s, _ in before.values()}
    assert len(old) == 1 and read(runs[0], "environment.json")["code"]["sha256"] in old

    joint = code / "methods" / "joint.py"
    joint.write_text(joint.read_text() + "# a comment changes the code, so every run\n")
    again = bench(code, "run", str(suite), "--no-report", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    short = old.pop()[:10]
    stale = [line for line in again.stderr.splitlines() if " stale (made by other code" in line]
    assert sorted(stale) == [f"{r.name} stale (made by other code: {short})" for r in runs]
    assert "2 finished run(s) were made by other code (stale) and kept" in again.stderr
    for r in runs:  # kept as they were: not retrained
        assert (read(r, "status.json"), read(r, "metrics.json")) == before[r.name]

    table = bench(code, "results", str(suite), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "joint *" in table.stdout and "boostnet *" in table.stdout
    assert "made by other code than the current (stale): " in table.stdout
    page = bench(code, "report", "--reports", str(tmp_path / "reports"), cwd=tmp_path)
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "reports" / "tied" / "runs" / f"{runs[0].name}.html").read_text()
    assert f"stale: made by other code ({short})" in html
    assert "2 stale" in (tmp_path / "reports" / "index.html").read_text()

    rerun = bench(code, "run", str(suite), "--rerun-stale", "--no-report", "--quiet",
                  cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "training it again from scratch" in rerun.stderr
    for r in runs:
        status = read(r, "status.json")
        assert status["state"] == "done" and status["fingerprint"][:10] != short
        (previous,) = (r / "previous").iterdir()
        assert previous.name.endswith(f"-code-{short}")
        assert read(previous, "metrics.json") == before[r.name][1]  # nothing lost
