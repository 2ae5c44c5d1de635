"""A method defined outside bench/ and methods/, in a plugin file next to the suite, runs
through bench tune and bench run (command-line subprocesses, no edit to the harness) and
appears in the report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
from methods import Method, NUMBER, Option, Range, register


@register("toy_mean")
class RunningMean(Method):
    """F_n = scale * mean(f_1..f_n): a complete method that only overrides combine."""

    OPTIONS = Method.OPTIONS + (Option("scale", NUMBER, 1.0, "multiplies the running mean"),)
    SEARCH_SPACE = {"scale": Range(0.5, 2.0)}

    def combine(self, outs):
        return [self.scale * sum(outs[: n + 1]) / (n + 1) for n in range(len(outs))]
'''

SUITE = """
name: toy
plugins: [toy_plugin.py]
dataset:
  name: synthetic
  heldout: 32
  options: {train_size: 96, test_size: 32, image_size: 16, num_classes: 4}
backbones:
  - {name: chain_tiny, overrides: {image_size: 16}}
methods:
  - joint
  - toy_mean
  - {name: toy_mean, label: toy-tuned, options: {scale: tuned}}
training: {epochs: 1, batch_size: 32, device: cpu}
budgets: {fractions: [0.9]}
tune: {trials: 2, pruner: none, sampler: random}
"""


def bench(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_plugin_method_is_tuned_run_and_reported(tmp_path):
    suite_dir = tmp_path / "suites"
    suite_dir.mkdir()
    (suite_dir / "toy_plugin.py").write_text(PLUGIN)
    (suite_dir / "toy.yaml").write_text(SUITE)
    suite = str(suite_dir / "toy.yaml")

    tuned = bench("tune", suite, cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    (best,) = (tmp_path / "results" / "toy" / "tuning").glob("toy--chain_tiny--toy-tuned--*.json")
    best = json.loads(best.read_text())
    assert best["baseline"]["options"] == {"scale": 1.0}  # trial 0: the method's default
    assert set(best["options"]) == {"scale"} and 0.5 <= best["options"]["scale"] <= 2.0

    ran = bench("run", suite, "--reports", str(tmp_path / "reports"), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    runs = {p.name.split("--")[1]: p for p in (tmp_path / "results" / "toy").iterdir()
            if p.is_dir() and p.name != "tuning"}
    assert set(runs) == {"joint", "toy_mean", "toy-tuned"}
    for run in runs.values():
        assert json.loads((run / "status.json").read_text())["state"] == "done"
    config = json.loads((runs["toy-tuned"] / "config.json").read_text())
    assert config["tuned"]["options"] == best["options"]
    env = json.loads((runs["toy_mean"] / "environment.json").read_text())
    assert env["code"]["files"] > 40  # the plugin's bytes are part of the fingerprint

    page = (tmp_path / "reports" / "toy" / "index.html").read_text()
    assert "toy_mean" in page and "toy-tuned" in page
    assert "Ablations: each variant minus its method" in page  # toy-tuned vs toy_mean
    assert "toy-tuned: {&#34;scale&#34;" in page
    table = bench("results", suite, cwd=tmp_path)
    assert table.returncode == 0 and "toy_mean" in table.stdout and " *" not in table.stdout
