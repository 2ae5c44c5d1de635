"""The commands in this process: where a SUITE argument's results are, and what
``bench results`` reads."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import cli
from bench.commands.common import suite_folder
from bench.errors import UsageError
from report_fixtures import make_suite


@pytest.fixture
def results(tmp_path):
    make_suite(tmp_path / "results", "demo", [{"run_id": "r", "method": "joint", "m": 20}],
               name="Demo")
    (tmp_path / "outside").mkdir()
    return tmp_path / "results"


def test_a_suite_name_resolves_inside_the_results_root(results):
    assert suite_folder("demo", results).path == results / "demo"
    for bad in ("..", "../outside", "/etc", "demo/..", "."):
        with pytest.raises(UsageError):
            suite_folder(bad, results)
    with pytest.raises(UsageError, match="suites with results: demo"):
        suite_folder("nope", results)


def test_results_of_a_yaml_reads_only_its_name(results, tmp_path, capsys):
    # The backbone does not exist: bench results must not build (or even check) it.
    suite = tmp_path / "anywhere" / "demo.yaml"
    suite.parent.mkdir()
    suite.write_text("name: demo\nbackbones: [not_a_backbone]\nmethods: [joint]\n")
    assert cli.main(["results", str(suite), "--results", str(results)]) == 0
    assert "joint" in capsys.readouterr().out
    assert cli.main(["results", "../outside", "--results", str(results)]) == 2
    assert "neither a suite file nor a suite folder name" in capsys.readouterr().err


def test_report_of_a_name_outside_the_results_root_exits_2(results, tmp_path, capsys):
    assert cli.main(["report", "..", "--results", str(results),
                     "--reports", str(tmp_path / "reports")]) == 2
    assert not Path(tmp_path / "reports").exists()
