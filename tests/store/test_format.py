"""docs/results-format.md against the files a real (tiny) run and study write."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from bench import cli
from bench.fileio import read_json

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "results-format.md"

SUITE = {
    "name": "fmt",
    "dataset": {"name": "synthetic", "heldout": 32,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 96,
                            "test_size": 32, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint", "boostnet"],
    "training": {"epochs": 1, "batch_size": 32, "device": "cpu"},
    "budgets": {"fractions": [0.8]},
    "evaluation": {"criteria": ["max_softmax", "entropy"], "combiners": ["none", "product"],
                   "global_threshold": True,
                   "risk_control": {"epsilons": [0.1], "repeats": 2},
                   "prediction_sets": {"alphas": [0.1]}},
    "tune": {"trials": 1, "pruner": "none"},
}


def documented() -> dict[str, dict[str, bool]]:
    """``{file pattern under results/: {key: always present}}`` from the doc's tables."""
    out: dict[str, dict[str, bool]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"### `results/(.+)`", line.strip())
        if heading:
            current = out.setdefault(heading.group(1), {})
        elif line.startswith("## "):
            current = None
        elif current is not None and line.startswith("| `"):
            key, present = [c.strip() for c in line.strip().strip("|").split("|")][:2]
            current[key.strip("`")] = present == "always"
    return out


def flatten(obj: dict, keys: set[str], prefix: str = "") -> set[str]:
    """Key paths of ``obj``, descending only where the doc lists children."""
    out = set()
    for k, v in obj.items():
        path = prefix + k
        if isinstance(v, dict) and any(d.startswith(path + ".") for d in keys):
            out |= flatten(v, keys, path + ".")
        elif isinstance(v, list) and v and any(d.startswith(path + "[].") for d in keys):
            for item in v:
                out |= flatten(item, keys, path + "[].")
        else:
            out.add(path)
    return out


def actual_keys(path: Path, keys: set[str]) -> set[str]:
    if path.suffix == ".csv":
        return set(pd.read_csv(path).columns)
    if path.suffix == ".pt":
        return flatten(torch.load(path, map_location="cpu", weights_only=True), keys)
    return flatten(read_json(path), keys)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fmt")
    suite = tmp / "fmt.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    out = tmp / "results"
    assert cli.main(["run", str(suite), "--results", str(out), "--no-report", "--quiet"]) == 0
    assert cli.main(["tune", str(suite), "--results", str(out)]) == 0
    for run in (out / "fmt").iterdir():  # latency.json: bench latency on each run
        if run.is_dir() and run.name != "tuning":
            assert cli.main(["latency", str(run), "--images", "8", "--warmup", "0",
                             "--repeats", "1"]) == 0
    return out


def files_for(pattern: str, results: Path) -> list[Path]:
    glob = pattern.replace("<suite>", "fmt").replace("<run_id>", "*").replace("<study>", "*")
    return sorted(results.glob(glob))


def test_every_documented_file_has_the_documented_keys(results):
    doc = documented()
    assert len(doc) >= 12
    for pattern, keys in doc.items():
        found = files_for(pattern, results)
        assert found, f"no file for {pattern}"
        for f in found:
            got = actual_keys(f, set(keys))
            assert got <= set(keys), f"{f.name}: undocumented {sorted(got - set(keys))}"
            always = {k for k, a in keys.items() if a}
            assert always <= got, f"{f.name}: documented but missing {sorted(always - got)}"


def test_every_file_written_is_documented(results):
    doc = documented()
    suite_dir = results / "fmt"
    run_files = {p.split("/")[-1] for p in doc if p.startswith("<suite>/<run_id>/")}
    suite_files = {p.split("/")[-1] for p in doc if p.count("/") == 1}
    runs = [p for p in suite_dir.iterdir() if p.is_dir() and p.name != "tuning"]
    assert len(runs) == 2
    for run in runs:
        assert {p.name for p in run.iterdir() if not p.name.startswith(".")} == run_files
    top = {p.name for p in suite_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert top == suite_files
