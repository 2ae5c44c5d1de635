"""The SLURM executor through submitit's local executor (``executor.slurm.cluster: local``):
one job array over the runs, a job preempted (SIGUSR2, the signal submitit asks SLURM for)
after a checkpoint, requeued by submitit's own checkpoint-and-requeue handler and resumed
with the same metrics as an uninterrupted run; logs next to the results."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from executor_plugin import (TUNE, bench, checked_study, events, metrics, progress_lines,
                             write_suite)

optuna = pytest.importorskip("optuna")

pytest.importorskip("submitit")
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_preempted_job_is_requeued_and_resumes_with_the_same_metrics(tmp_path, reference):
    suite = write_suite(tmp_path, victim="joint", epoch=1, signal="SIGUSR2")
    out = bench("run", str(suite), "--executor", "slurm", "--no-report",
                "--set", "executor.slurm.cluster=local", "--set", "executor.slurm.time_min=30",
                cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "arm").exists()  # the first attempt was preempted
    assert metrics(tmp_path / "results") == reference

    seen = events(tmp_path)
    assert not [e for e in seen if e[2] == "alone"]  # the array's two jobs ran at once
    (joint,) = [r for r in reference if "--joint--" in r]
    (other,) = [r for r in reference if r != joint]
    pids = list(dict.fromkeys(p for p, r, _ in seen if r == joint))
    assert len(pids) == 2  # requeued: a new process
    assert [int(e) for p, r, e in seen if p == pids[1] and r == joint] == [2, 3]  # resumed
    assert sorted(progress_lines(out.stderr)) == [f"[run 1/2] {joint} -> done",
                                                  f"[run 2/2] {other} -> done"]

    logs = tmp_path / "results" / "spread" / "_slurm"
    assert not (logs / "%j").exists()  # submitit's placeholder folder is removed
    said = {p.name: p.read_text() for p in logs.glob("*/*_log.*")}
    assert len({name.split("_log")[0] for name in said}) == 2  # one job per run
    assert any("preempted" in text and "Requeued" in text for text in said.values())
    for line in out.stderr.splitlines():
        if line.startswith(joint + ": job "):
            assert str(logs) in line  # the driver says which job ran which run, and where
    for run in (tmp_path / "results" / "spread").glob("chain_tiny--*"):
        assert json.loads((run / "status.json").read_text())["state"] == "done"
    # The log folder is no run: the summary holds the two runs alone.
    with open(tmp_path / "results" / "spread" / "summary.csv") as f:
        assert {row["run_id"] for row in csv.DictReader(f)} == set(reference)

    # Again: both runs are finished, so no job is submitted.
    jobs = sorted(logs.iterdir())
    again = bench("run", str(suite), "--executor", "slurm", "--no-report",
                  "--set", "executor.slurm.cluster=local", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(progress_lines(again.stderr)) == [f"[run 1/2] {joint} -> done, skipped",
                                                    f"[run 2/2] {other} -> done, skipped"]
    assert sorted(logs.iterdir()) == jobs


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="this machine has SLURM")
def test_without_sbatch_the_slurm_cluster_is_a_clear_error(tmp_path):
    suite = write_suite(tmp_path)
    out = bench("run", str(suite), "--executor", "slurm", "--no-report", cwd=tmp_path)
    assert out.returncode == 2
    assert "sbatch is not on PATH" in out.stderr and "cluster: local" in out.stderr


def test_tuning_jobs_share_one_study(tmp_path):
    raw = {"tune": TUNE, "methods": [{"name": "boostnet", "label": "boost-tuned",
                                      "options": {"temperature": "tuned"}}]}
    suite = write_suite(tmp_path, **raw)
    out = bench("tune", str(suite), "--executor", "slurm",
                "--set", "executor.slurm.cluster=local", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "2 tuning job(s)" in out.stderr  # executor.slurm.tune_workers, one array
    trials = checked_study(tmp_path, out.stdout)
    assert len({t.user_attrs["worker"] for t in trials}) <= 2
    logs = tmp_path / "results" / "spread" / "_slurm"
    assert not (logs / "%j").exists()
    assert len({p.name.split("_log")[0] for p in logs.glob("*/*_log.out")}) == 2  # 2 jobs
