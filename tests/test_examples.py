"""docs/extending.md's guides run: each worked example in docs/examples/ (a plugin file and a suite
using it) passes `bench run --dry-run` and a one-epoch run, as a user would type them, in
processes of their own (the plugins register names this process should not see)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
# guide title in docs/extending.md -> (suite, plugin, the name the plugin registers, runs)
GUIDES = {
    "Add a method": ("add-a-method.yaml", "method_plugin.py", "mean_ensemble", 3),
    "Add a backbone": ("add-a-backbone.yaml", "backbone_plugin.py", "example_cnn", 2),
    "Add a data set": ("add-a-data-set.yaml", "dataset_plugin.py", "shapes", 2),
}


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_guide_points_to_its_example():
    guides = (ROOT / "docs" / "extending.md").read_text()
    for title, (suite, plugin, _, _) in GUIDES.items():
        match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", guides, re.S | re.M)
        assert match, f"docs/extending.md has no section '## {title}'"
        assert f"docs/examples/{suite}" in match.group(1)
        assert f"docs/examples/{plugin}" in match.group(1)
        assert (EXAMPLES / suite).is_file() and (EXAMPLES / plugin).is_file()


def test_each_guide_is_written_once():
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for title in GUIDES:
        found = [p.name for p in pages
                 if re.search(rf"^#+ (How to )?{title}\b", p.read_text(), re.M | re.I)]
        assert found == ["extending.md"], f"'{title}' is written in {found}"


@pytest.mark.parametrize("title", list(GUIDES))
def test_the_example_runs_dry_and_for_one_epoch(title, tmp_path):
    suite, _, registered, runs = GUIDES[title]
    path = f"docs/examples/{suite}"
    dry = bench(tmp_path, "run", path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{runs} run(s)" in dry.stdout and "exits (MMACs)" in dry.stdout
    assert "warning" not in dry.stderr.lower(), dry.stderr
    results = tmp_path / "results"
    one = bench(tmp_path, "run", path, "--set", "training.epochs=1", "--set",
                "dataset.subset={train: 256, test: 128}", "--results", str(results),
                "--reports", str(tmp_path / "reports"), "--quiet")
    assert one.returncode == 0, one.stderr
    folders = [p for p in next(results.iterdir()).iterdir() if (p / "metrics.json").exists()]
    assert len(folders) == runs
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert len(metrics["anytime"]) == 3 and len(metrics["budgeted"]) == 2
        assert json.loads((folder / "status.json").read_text())["state"] == "done"
    # the plugin's name is the data set, backbone or method of the runs
    assert any(f'"name": "{registered}"' in (f / "config.json").read_text() for f in folders)
    assert (tmp_path / "reports" / "index.html").is_file()
