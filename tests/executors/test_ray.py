"""The Ray executor on a local cluster of 2 CPUs: two runs at once, a worker killed after a
checkpoint and its run retried and resumed, results in a shared root or back to the driver,
an impossible request refused at once, tuning workers as actors sharing a study.

Every ``bench`` command runs in its own process on this checkout's code (the cluster's
workers inherit it), as a user would start it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from executor_plugin import (ROOT, SUITE, TUNE, bench, checked_study, events, metrics,
                             progress_lines, write_suite)

pytest.importorskip("ray")
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

# A cluster owned by a helper process: ray.init() there, the address printed, stopped by
# ray.shutdown() when the test closes the helper's stdin (only what it started ends).
CLUSTER = """
import logging, sys, ray
ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture(scope="module")
def cluster():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    helper = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    address = helper.stdout.readline().strip()
    assert address, "the Ray cluster did not start"
    yield address
    helper.stdin.close()
    helper.wait(timeout=120)


@pytest.mark.parametrize("results, kill_after, resumed_at", [
    ("shared", 1, 2),  # the worker wrote its checkpoint in the run folder itself
    ("driver", 2, 2),  # killed before epoch 2's checkpoint reached the driver: epoch 1's
])
def test_a_killed_worker_is_retried_and_resumes_with_the_same_metrics(
        tmp_path, cluster, reference, results, kill_after, resumed_at):
    suite = write_suite(tmp_path, victim="joint", epoch=kill_after)
    args = ["run", str(suite), "--executor", "ray", "--no-report",
            "--set", f"executor.ray.results={results}"]
    if results == "shared":  # join the running cluster; else one starts with the command
        args += ["--ray-address", cluster]
    started = time.monotonic()
    out = bench(*args, cwd=tmp_path)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "arm").exists()  # the first attempt did stop itself

    got = metrics(tmp_path / "results")
    assert got == reference  # identical metrics, though one run was killed and resumed

    seen = events(tmp_path)
    assert not [e for e in seen if e[2] == "alone"]  # the two runs trained at the same time
    (joint,) = [r for r in reference if "--joint--" in r]
    (other,) = [r for r in reference if r != joint]
    pids = list(dict.fromkeys(p for p, r, _ in seen if r == joint))
    assert len(pids) == 2  # the killed attempt and its retry, in another process
    # (Ray may give the retry the process that trained the other run: filter by run too)
    retry = [int(e) for p, r, e in seen if p == pids[1] and r == joint]
    assert retry == list(range(resumed_at, 4))  # resumed from the checkpoint, not redone
    assert [int(e) for p, r, e in seen if r == other] == [1, 2, 3]

    lines = progress_lines(out.stderr)  # one line per run on the driver
    assert sorted(lines) == [f"[run 1/2] {joint} -> done", f"[run 2/2] {other} -> done"]
    for run in (tmp_path / "results" / "spread").glob("chain_tiny--*"):
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "done" and (run / "predictions.pt").is_file()
    assert (tmp_path / "results" / "spread" / "summary.csv").read_text().count("\n") > 2
    print(f"ray {results}: {took:.1f} s")


def test_an_impossible_request_is_refused_at_once(tmp_path, cluster):
    suite = write_suite(tmp_path)
    started = time.monotonic()
    out = bench("run", str(suite), "--ray-address", cluster, "--no-report",
                "--set", "executor.ray.num_cpus=3", cwd=tmp_path)
    assert out.returncode == 2
    assert "executor.ray.num_cpus" in out.stderr and "no node of the Ray cluster" in out.stderr
    assert "2 CPUs" in out.stderr  # what the nodes have
    assert time.monotonic() - started < 120  # no waiting for a node that never comes
    assert not list((tmp_path / "results").glob("spread/chain_tiny--*"))


def test_tuning_workers_share_one_study(tmp_path, cluster):
    raw = {"tune": TUNE, "methods": ["joint", {"name": "boostnet", "label": "boost-tuned",
                                               "options": {"temperature": "tuned"}}]}
    suite = write_suite(tmp_path, **raw)
    out = bench("tune", str(suite), "--ray-address", cluster, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = checked_study(tmp_path, out.stdout)
    assert trials[0].params == {"temperature": 0.5}  # the method's default, once
    assert out.stderr.count("[tuning worker ") >= 2  # both actors reported


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_machine_each_run_gets_a_gpu_unless_told_otherwise(tmp_path):
    """``num_gpus`` left to its default gives each run one GPU where the cluster has some;
    Ray hides the GPUs from a task that asked for none, so ``device: auto`` trains on CPU."""
    devices = {}
    for gpus in (None, 0):
        folder = tmp_path / f"gpus-{gpus}"
        folder.mkdir()
        suite = write_suite(folder, training={**SUITE["training"], "device": "auto"})
        args = ["run", str(suite), "--executor", "ray", "--no-report"]
        if gpus is not None:
            args += ["--set", f"executor.ray.num_gpus={gpus}"]
        out = bench(*args, cwd=folder)
        assert out.returncode == 0, out.stderr
        runs = list((folder / "results" / "spread").glob("chain_tiny--*"))
        assert len(runs) == 2
        devices[gpus] = {json.loads((r / "environment.json").read_text())["device"]
                         for r in runs}
    assert all(d.startswith("cuda") for d in devices[None]), devices
    assert devices[0] == {"cpu"}, devices
