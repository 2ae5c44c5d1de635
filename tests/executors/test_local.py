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
import torch

from bench import cli, store
from bench.config import load_suite
from bench.pipeline import claims, plan, runner

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


# -- in this process: failures stay in their run, broken files are set aside ---------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A suite whose two runs are finished, to copy."""
    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "tied.yaml").write_text(SUITE)
    assert cli.main(["run", str(tmp / "tied.yaml"), "--results", str(tmp / "results"),
                     "--no-report", "--quiet"]) == 0
    return tmp


@pytest.fixture
def copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "w")
    suite = tmp_path / "w" / "tied.yaml"
    runs = {r.method: r for r in store.Suite(tmp_path / "w" / "results" / "tied").runs}
    return suite, runs


def run_again(suite: Path, capsys, *extra) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["run", str(suite), "--results", str(suite.parent / "results"),
                     "--no-report", *extra])
    return code, capsys.readouterr().err


def test_a_run_that_raises_fails_alone_and_the_suite_goes_on(tmp_path, monkeypatch, capsys):
    suite = tmp_path / "tied.yaml"
    suite.write_text(SUITE)
    real = runner._train_and_evaluate

    def joint_explodes(spec, *args):
        if spec.method_label == "joint":
            raise ValueError("numpy says no\n(second line)")
        return real(spec, *args)

    monkeypatch.setattr(runner, "_train_and_evaluate", joint_explodes)
    code, err = run_again(suite, capsys, "--quiet")
    assert code == 1
    runs = {r.method: r for r in store.Suite(tmp_path / "results" / "tied").runs}
    assert runs["joint"].state == "failed" and runs["boostnet"].state == "done"
    assert "ValueError: numpy says no" in runs["joint"].status["traceback"]
    assert f"{runs['joint'].run_id} failed: ValueError: numpy says no\n" in err  # one line
    assert err.endswith("1 run(s) failed (the status.json of a run that started holds the "
                        f"traceback):\n  {runs['joint'].run_id}: ValueError: numpy says no\n")
    assert "Traceback" not in err
    for run in runs.values():  # no claim is left held
        claim = claims.try_claim(run.lock_path)
        assert claim is not None
        claim.release()
    monkeypatch.undo()  # the next run retries the failed one, from where it stopped
    code, err = run_again(suite, capsys, "--quiet")
    assert code == 0 and store.Run(runs["joint"].path).state == "done"


def test_a_broken_metrics_json_comes_back_from_the_predictions(copy, capsys):
    suite, runs = copy
    run = runs["joint"]
    before = run.metrics
    run.file("metrics.json").write_text('{"anytime": [')
    (run.path / ".metrics.json.x8y7z6w5.tmp").write_text("{")  # a killed write
    code, err = run_again(suite, capsys)
    assert code == 0
    (aside,) = run.path.glob("metrics.json.corrupt-*")
    assert aside.read_text() == '{"anytime": ['
    assert f"{run.file('metrics.json')} is unreadable (invalid JSON: " in err
    assert f"{run.run_id}: metrics.json computed again from its saved predictions" in err
    assert store.Run(run.path).metrics == before
    assert not list(run.path.glob(".*.tmp")) and "(done, skipped)" in err
    claim = claims.try_claim(run.lock_path)  # released as soon as the run was done
    assert claim is not None
    claim.release()


def test_a_finished_run_with_broken_status_and_predictions_is_run_again(copy, capsys):
    suite, runs = copy
    run = runs["boostnet"]
    before = run.metrics
    run.file("status.json").write_text("")
    run.file("predictions.pt").write_bytes(b"garbage")
    code, err = run_again(suite, capsys, "--quiet")
    assert code == 0
    fresh = store.Run(run.path)
    assert fresh.state == "done" and fresh.metrics == before  # resumed from its checkpoint
    assert len(list(run.path.glob("status.json.corrupt-*"))) == 1
    (aside,) = run.path.glob("predictions.pt.corrupt-*")
    assert aside.read_bytes() == b"garbage"
    assert f"{run.file('predictions.pt')} is unreadable (not a readable torch file: " in err
    assert torch.equal(fresh.load_predictions()["test"]["targets"],
                       store.Run(runs["joint"].path).load_predictions()["test"]["targets"])


def test_unreadable_predictions_for_a_new_evaluation_fail_that_run_only(copy, capsys):
    suite, runs = copy
    run = runs["joint"]
    status, metrics = run.status, run.metrics
    run.file("predictions.pt").write_bytes(b"garbage")
    code, err = run_again(suite, capsys, "--quiet", "--set", "evaluation.calibration=true")
    assert code == 1
    assert f"{run.run_id} failed: UnreadableFile: {run.file('predictions.pt')}: not a " \
           "readable torch file" in err
    assert "the run keeps its metrics.json without the evaluation it lacks" in err
    fresh = store.Run(run.path)
    assert fresh.status == status and fresh.metrics == metrics  # nothing was changed
    assert "calibration" in store.Run(runs["boostnet"].path).metrics  # the other got it


def test_an_error_while_planning_fails_that_run_and_releases_its_claim(copy, monkeypatch,
                                                                         capsys):
    suite, runs = copy
    run = runs["joint"]
    run.file("status.json").write_text("{")  # not done: it will be claimed and tidied

    def cannot_rename(*args):
        raise PermissionError(13, "Permission denied", str(run.file("status.json")))

    monkeypatch.setattr(plan, "tidy_run", cannot_rename)
    code, err = run_again(suite, capsys, "--quiet")
    assert code == 1 and f"{run.run_id} failed: PermissionError: [Errno 13]" in err
    claim = claims.try_claim(run.lock_path)
    assert claim is not None
    claim.release()


def test_a_truncated_checkpoint_is_set_aside_and_the_run_starts_over(copy, capsys):
    suite, runs = copy
    run = runs["boostnet"]
    before = run.metrics
    ckpt = run.checkpoint_path.read_bytes()
    run.checkpoint_path.write_bytes(ckpt[:1000])
    run.file("metrics.json").unlink()
    code, err = run_again(suite, capsys, "--quiet")
    assert code == 0
    (aside,) = run.path.glob("checkpoint.pt.corrupt-*")
    assert aside.read_bytes() == ckpt[:1000]
    (line,) = [e for e in err.splitlines() if "checkpoint.pt" in e]
    assert line.startswith(f"warning: {run.checkpoint_path} is unreadable (not a readable "
                           "torch file")
    assert line.endswith(f"moved to {aside.name}; the run starts over")
    assert store.Run(run.path).metrics == before  # trained again: the same numbers


def test_a_finished_runs_leftover_temporaries_are_removed_when_no_one_holds_it(copy, capsys):
    suite, runs = copy
    leftover = runs["joint"].path / ".metrics.json.a1b2c3d4.tmp"  # a killed re-evaluation
    leftover.write_text("{")
    held = runs["boostnet"].path / ".metrics.json.e5f6g7h8.tmp"  # one being written now
    held.write_text("{")
    claim = claims.try_claim(runs["boostnet"].lock_path)
    try:
        code, err = run_again(suite, capsys)
    finally:
        claim.release()
    assert code == 0 and err.count("(done, skipped)") == 2
    assert not leftover.exists() and held.exists()


def test_suite_files_broken_or_half_written_are_tidied(copy, capsys):
    suite, runs = copy
    folder = suite.parent / "results" / "tied"
    (folder / "suite.json").write_text('{"name": ')
    (folder / ".summary.csv.q1w2e3r4.tmp").write_text("half")
    code, err = run_again(suite, capsys, "--quiet")
    assert code == 0 and f"{folder / 'suite.json'} is unreadable" in err
    assert len(list(folder.glob("suite.json.corrupt-*"))) == 1
    assert not list(folder.glob(".*.tmp"))
    assert store.Suite(folder).config["run_count"] == 2
