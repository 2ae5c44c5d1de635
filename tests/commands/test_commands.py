"""The commands in this process: where a SUITE argument's results are, and what
``bench results`` reads."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import cli
from bench.commands.common import suite_folder
from bench.config import load_suite
from bench.errors import UsageError
from report_fixtures import make_run, make_suite


@pytest.fixture
def results(tmp_path):
    make_suite(tmp_path / "results", "demo", [{"run_id": "r", "method": "joint", "m": 20}],
               name="demo")
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


@pytest.mark.parametrize("argv, option", [
    (["results", "demo", "--results", "{file}"], "--results"),
    (["report", "--results", "{file}", "--reports", "{tmp}/r"], "--results"),
    (["report", "--results", "{results}", "--reports", "{file}"], "--reports"),
    (["report", "--results", "{tmp}/nowhere", "--reports", "{tmp}/r"], "--results"),
    (["run", "{suite}", "--results", "{file}"], "--results"),
    (["run", "{suite}", "--results", "{tmp}/out", "--reports", "{file}"], "--reports"),
    (["run", "{suite}", "--results", "{file}/below"], "--results"),
    (["tune", "{tuned}", "--results", "{file}"], "--results"),
])
def test_folders_that_cannot_be_used_exit_2_in_one_line(results, tmp_path, capsys, argv,
                                                         option):
    file = tmp_path / "a-file"
    file.write_text("")
    suite, tuned = tmp_path / "s.yaml", tmp_path / "t.yaml"
    suite.write_text("name: s\ndataset: {name: synthetic, heldout: 32, options: {train_size: "
                     "64, test_size: 32, image_size: 16}}\nbackbones: [{name: chain_tiny, "
                     "overrides: {image_size: 16}}]\nmethods: [boostnet]\n")
    tuned.write_text(suite.read_text().replace(
        "[boostnet]", "[{name: boostnet, options: {temperature: tuned}}]\n"
                      "tune: {trials: 1, objective: anytime}"))
    argv = [a.format(file=file, tmp=tmp_path, results=results, suite=suite, tuned=tuned)
            for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} ") and err.count("\n") == 1, err
    assert "not a folder" in err or "no such folder" in err or "cannot create" in err
    assert not (tmp_path / "out").exists() or argv[0] == "run"


def test_an_os_error_while_writing_is_one_line_and_exit_2(results, tmp_path, monkeypatch,
                                                          capsys):
    def disk_full(*args):
        raise OSError(28, "No space left on device", str(tmp_path / "r" / "index.html"))

    monkeypatch.setattr("bench.report.render", disk_full)
    assert cli.main(["report", "--results", str(results), "--reports", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == \
        f"error: {tmp_path / 'r' / 'index.html'}: No space left on device\n"


def test_results_and_report_name_unreadable_files_and_leave_them_out(tmp_path, capsys):
    root = tmp_path / "results"
    make_suite(root, "demo", [{"run_id": "a", "method": "joint", "skill": 1.0},
                              {"run_id": "b", "method": "boostnet", "skill": 2.0},
                              {"run_id": "c", "method": "boostnet", "skill": 2.0, "seed": 1}],
               name="Demo")
    (root / "demo" / "c" / "metrics.json").write_text('{"anytime": [{"exit"')
    (root / "demo" / "a" / "predictions.pt").write_bytes(b"PK\x03\x04 truncated")
    (root / "demo" / "a" / "history.csv").write_text("")
    capsys.readouterr()
    assert cli.main(["results", "demo", "--results", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "seeds per cell: 1" in out  # c's old summary rows are not used
    assert err == (f"warning: {root / 'demo' / 'c' / 'metrics.json'} is unreadable (invalid "
                   "JSON: Expecting ':' delimiter: line 1 column 21 (char 20)); the run's "
                   "results are left out\n")
    assert cli.main(["report", "--results", str(root), "--reports", str(tmp_path / "r")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"report: {tmp_path / 'r' / 'index.html'}"
    said = "\n".join(lines[:-1])
    assert all(line.startswith("warning: ") for line in lines[:-1])
    for path in (root / "demo" / "c" / "metrics.json", root / "demo" / "a" / "history.csv",
                 root / "demo" / "a" / "predictions.pt"):
        assert said.count(f"{path} is unreadable") == 1, said  # once, however often read
    assert "Traceback" not in said


SETTINGS = """\
name: settings
dataset: {name: synthetic, heldout: 32, options: {train_size: 64, test_size: 32,
          image_size: 16}}
backbones: [{name: chain_tiny, overrides: {image_size: 16}}]
methods: [joint]
seeds: [0]
training: {epochs: 2, device: cpu}
budgets: {fractions: [0.7]}
"""


def test_results_use_the_current_runs_and_other_settings_on_purpose(tmp_path, capsys):
    """`bench run --set training.epochs=1`, then with 2 epochs: the table holds the
    2-epoch run alone and says that one run of other settings is kept; `--set` shows the
    1-epoch run instead."""
    suite_file = tmp_path / "settings.yaml"
    suite_file.write_text(SETTINGS)
    ids = {e: load_suite(str(suite_file), [f"training.epochs={e}"]).runs[0].run_id
           for e in (1, 2)}
    assert ids[1] != ids[2]
    root = tmp_path / "results"
    make_suite(root, "settings", [{"run_id": ids[2], "method": "joint", "skill": 2.0}],
               name="settings")
    make_run(root / "settings", ids[1], method="joint", skill=0.2)
    capsys.readouterr()
    assert cli.main(["results", str(suite_file), "--results", str(root)]) == 0
    two = capsys.readouterr().out
    assert "seeds per cell: 1" in two and "seeds per cell: 2" not in two
    assert "not in the tables: other settings: 1 run" in two
    assert cli.main(["results", str(suite_file), "--results", str(root),
                     "--set", "training.epochs=1"]) == 0
    one = capsys.readouterr().out
    assert "seeds per cell: 1" in one and one.splitlines()[3:] != two.splitlines()[3:]
    assert cli.main(["results", "settings", "--results", str(root), "--set", "seeds=[1]"]) == 2
    assert "--set needs a suite file" in capsys.readouterr().err


def test_results_of_a_suite_file_whose_folder_holds_another_suite_exit_2(results, tmp_path,
                                                                          capsys):
    other = tmp_path / "other.yaml"
    other.write_text("name: demo?\n")  # the folder name of suite 'demo', another name
    assert cli.main(["results", str(other), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {results / 'demo'}: the folder of suite 'demo?' holds the "
                   "results of suite 'demo' (both names give the folder name 'demo'); rename "
                   "one of the suites\n")
