"""A finished run trained by the harness itself on tiny synthetic data (a few seconds), for
the commands that start from a run folder (latency, export, evaluate)."""
from __future__ import annotations

from pathlib import Path

from bench import cli

SUITE = """\
name: tiny
dataset: {name: synthetic, heldout: 48, options: {train_size: 112, test_size: 40,
          image_size: 16, num_classes: 4}}
backbones: [{name: chain_tiny, overrides: {image_size: 16}}]
methods: [METHOD]
seeds: [0]
training: {epochs: 1, batch_size: 32, device: cpu}
budgets: {fractions: [0.5, 0.8]}
"""


def suite_file(folder: Path, method: str = "boostnet") -> Path:
    path = folder / "tiny.yaml"
    path.write_text(SUITE.replace("METHOD", method))
    return path


def finished_run(folder: Path, method: str = "boostnet") -> Path:
    """Train the one run of the tiny suite into ``folder``/results; its run folder."""
    suite = suite_file(folder, method)
    results = folder / "results"
    code = cli.main(["run", str(suite), "--results", str(results), "--no-report", "--quiet"])
    assert code == 0
    (run,) = [p for p in (results / "tiny").iterdir() if p.is_dir() and "--" in p.name]
    return run
