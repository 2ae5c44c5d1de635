"""--runs-per-device K: K runs side by side on each device. The local executor's workers
(bench.executors.side_by_side: devices, threads, the command each worker runs, and the
suite run for real by two workers at once on this CPU), Ray's fractional GPUs and SLURM's
tasks per GPU job (the resources and the sbatch script they make), and a bad K."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from bench.config import RayConfig, SlurmConfig, TrainingConfig
from bench.errors import UsageError
from bench.executors import side_by_side
from executor_plugin import ROOT, bench, events, metrics, write_suite


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "two", 0, ""])
def test_a_bad_k_is_a_one_line_error(value):
    with pytest.raises(UsageError) as err:
        side_by_side.runs_per_device(value)
    assert "--runs-per-device: expected a whole number >= 1" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_good_k():
    assert side_by_side.runs_per_device("4") == 4 == side_by_side.runs_per_device(4)


def test_the_command_line_says_a_bad_k_in_one_line(tmp_path):
    suite = write_suite(tmp_path)
    out = bench("run", str(suite), "--runs-per-device", "0", cwd=tmp_path, timeout=120)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == ["error: --runs-per-device: expected a whole number >= 1 (runs side by "
                     "side on each device), found '0'"]
    assert not (tmp_path / "results").exists()


def test_on_a_cpu_the_cores_are_split():
    team = side_by_side.workers("cpu", 4, cores=16, cuda_count=2)
    assert [w.device for w in team] == ["cpu"] * 4
    assert all(w.env == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"} for w in team)
    assert side_by_side.workers("auto", 3, cores=2, cuda_count=0)[0].env["OMP_NUM_THREADS"] \
        == "1"  # at least one thread each


def test_on_gpus_each_worker_sees_its_own_and_the_suite_stays_as_it_is():
    team = side_by_side.workers("auto", 2, cores=16, cuda_count=2)
    assert [(w.device, w.env["CUDA_VISIBLE_DEVICES"]) for w in team] == [
        ("cuda:0", "0"), ("cuda:0", "0"), ("cuda:1", "1"), ("cuda:1", "1")]
    assert all(w.env["OMP_NUM_THREADS"] == "4" for w in team)
    visible = side_by_side.workers("cuda", 1, cores=4, cuda_count=2, visible="3,5")
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in visible] == ["3", "5"]
    one = side_by_side.workers("cuda:1", 3, cores=6, cuda_count=2)
    assert [w.device for w in one] == ["cuda:1"] * 3
    assert all("CUDA_VISIBLE_DEVICES" not in w.env for w in one)  # cuda:1 means that GPU
    with pytest.raises(UsageError, match="training.device is cuda, but this machine sees no"):
        side_by_side.workers("cuda", 2, cores=4, cuda_count=0)


def test_a_worker_runs_the_same_selection_quietly_without_a_report():
    args = Namespace(suite="s.yaml", overrides=["training.epochs=2"], only="*joint*",
                     results=Path("out"), rerun_stale=True)
    assert side_by_side.worker_args(args) == [
        "s.yaml", "--set", "training.epochs=2", "--only", "*joint*", "--results", "out",
        "--executor", "local", "--no-report", "--quiet", "--rerun-stale"]


@pytest.mark.slow
def test_two_workers_train_the_suite_side_by_side(tmp_path, reference):
    """The two runs meet after their first epoch (the plugin waits for both), so they
    trained at the same time, in two processes, each with half of the cores."""
    suite = write_suite(tmp_path, victim="nobody", runs=2)
    out = bench("run", str(suite), "--runs-per-device", "2", "--no-report", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert metrics(tmp_path / "results") == reference
    seen = events(tmp_path)
    assert not [e for e in seen if e[2] == "alone"]
    assert len({pid for pid, _, _ in seen}) == 2
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    for run in (tmp_path / "results" / "spread").glob("chain_tiny--*"):
        assert json.loads((run / "status.json").read_text())["state"] == "done"
        assert str(json.loads((run / "environment.json").read_text())["threads"]) == threads
    assert out.stderr.count("worker ") >= 2 and "on cpu" in out.stderr
    # Again: both runs are finished; the workers find nothing to do.
    again = bench("run", str(suite), "--runs-per-device", "2", "--no-report", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert metrics(tmp_path / "results") == reference


def test_ray_gives_each_run_a_kth_of_a_gpu(monkeypatch):
    ray = pytest.importorskip("ray")
    from bench.executors import ray as ray_executor

    monkeypatch.setattr(ray, "nodes", lambda: [
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}])
    cuda = TrainingConfig(device="cuda")
    assert ray_executor.resources(RayConfig(), cuda) == {"num_cpus": 1.0, "num_gpus": 1}
    assert ray_executor.resources(RayConfig(), cuda, 4) == {"num_cpus": 1.0, "num_gpus": 0.25}
    assert ray_executor.resources(RayConfig(num_gpus=2), cuda, 8)["num_gpus"] == 0.25
    cpu = TrainingConfig(device="cpu")
    assert ray_executor.resources(RayConfig(), cpu, 4)["num_gpus"] == 0


def test_slurm_jobs_run_k_tasks_on_their_gpu(monkeypatch, tmp_path):
    submitit = pytest.importorskip("submitit")
    from bench import store
    from bench.executors import slurm as slurm_executor

    monkeypatch.setattr(slurm_executor.shutil, "which", lambda name: "/usr/bin/" + name)
    ex = slurm_executor.executor(SlurmConfig(cpus=2), TrainingConfig(device="cuda"),
                                 store.Suite(tmp_path / "s"), "bench-s", runs_per_device=4)
    params = ex._executor.parameters
    assert params["ntasks_per_node"] == 4 and params["gpus_per_node"] == 1
    script = submitit.slurm.slurm._make_sbatch_string(command="python -m x",
                                                      folder=str(tmp_path), **params)
    assert "#SBATCH --ntasks-per-node=4" in script and "#SBATCH --gpus-per-node=1" in script
    assert "#SBATCH --cpus-per-task=2" in script
    one = slurm_executor.executor(SlurmConfig(), TrainingConfig(device="cuda"),
                                  store.Suite(tmp_path / "s"), "bench-s")
    assert one._executor.parameters["ntasks_per_node"] == 1


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_slurm_job_of_two_tasks_trains_two_runs_at_once(tmp_path, reference):
    """submitit's local cluster: one job, two tasks, one run each, meeting after epoch 1."""
    pytest.importorskip("submitit")
    suite = write_suite(tmp_path, victim="nobody", runs=2)
    out = bench("run", str(suite), "--executor", "slurm", "--runs-per-device", "2",
                "--no-report", "--set", "executor.slurm.cluster=local", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert metrics(tmp_path / "results") == reference
    seen = events(tmp_path)
    assert not [e for e in seen if e[2] == "alone"] and len({p for p, _, _ in seen}) == 2
    jobs = {line.split(": job ")[1].split(",")[0] for line in out.stderr.splitlines()
            if ": job " in line}
    assert len(jobs) == 1  # both runs in one job
    assert "task 0" in out.stderr and "task 1" in out.stderr


def test_a_killed_parent_stops_its_workers_and_their_runs_say_interrupted(tmp_path):
    # runs=3 with two runs: both wait after epoch 1 for a third that never comes, so the
    # workers are mid-run when the parent gets SIGTERM (a scheduler or CI stopping it)
    suite = write_suite(tmp_path, victim="nobody", runs=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    parent = subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite),
                               "--runs-per-device", "2", "--no-report"], cwd=tmp_path,
                              env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(list(tmp_path.glob("epoch1-*"))) < 2:
        assert parent.poll() is None and time.time() < deadline
        time.sleep(0.2)
    parent.send_signal(signal.SIGTERM)
    stderr = parent.communicate(timeout=120)[1]
    assert parent.returncode != 0
    pids = [int(p) for p in re.findall(r"worker \d/2 on cpu \(\d+ threads\): pid (\d+)", stderr)]
    assert len(pids) == 2
    for pid in pids:  # ended and reaped: not left training on their own
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    states = [json.loads((run / "status.json").read_text())["state"]
              for run in (tmp_path / "results" / "spread").glob("chain_tiny--*")]
    assert states == ["interrupted", "interrupted"]
