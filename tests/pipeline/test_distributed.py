"""Scaling out: workers sharing a suite or a study, DDP with gloo on CPU, run claims."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bench import cli, store
from bench.config import TrainingConfig, load_suite, select_targets, study_name
from bench.data import unshard
from bench.data.splits import shard
from bench.pipeline import claims
from bench.pipeline.distributed import Dist, agree, check_sync_bn

ROOT = Path(__file__).resolve().parents[2]
SUITE = {
    "name": "shared",
    "dataset": {"name": "synthetic", "heldout": 64,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 320,
                            "test_size": 64, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint", "boostnet"],
    "seeds": [0, 1],
    "training": {"epochs": 2, "batch_size": 32, "device": "cpu",
                 "schedule": {"name": "constant"}, "optimizer": {"lr": 0.05}},
    "budgets": {"fractions": [0.8]},
}


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore"}


def write(tmp_path, raw):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def bench(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(procs, timeout=240):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [err for _, err in outs]


def started(stderr: str) -> list[str]:
    """Run ids a worker trained: the runs' closing lines ("[run 2/4] <id> -> done in 5 s"),
    not the training bar's frames (which text-mode pipes turn into lines of their own) nor
    the lines of skipped runs."""
    return [line.split()[2] for line in stderr.splitlines()
            if line.startswith("[run ") and " -> " in line]


def test_two_workers_share_a_suite_without_duplicated_work(tmp_path):
    suite = write(tmp_path, SUITE)
    results = tmp_path / "results"
    errs = finish([bench("run", suite, "--results", str(results), "--no-report")
                   for _ in range(2)])
    trained = started(errs[0]) + started(errs[1])
    runs = sorted(p.name for p in (results / "shared").iterdir() if p.is_dir())
    assert len(runs) == 4 and sorted(trained) == runs  # each run trained exactly once
    for run in runs:
        status = json.loads((results / "shared" / run / "status.json").read_text())
        assert status["state"] == "done"
    lines = (results / "shared" / "summary.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * (3 + 1)  # header + per run: 3 exits and 1 budget


def run_here(capsys, *args):
    """``python -m bench ARGS`` in this process (no interpreter start-up); its stderr."""
    capsys.readouterr()
    assert cli.main(list(args)) == 0
    return capsys.readouterr().err


def test_a_claimed_run_is_skipped_and_a_dead_workers_run_is_taken(tmp_path, capsys):
    raw = {**SUITE, "methods": ["joint"], "seeds": [0]}
    suite = write(tmp_path, raw)
    results = tmp_path / "results"
    (spec,) = load_suite(suite).runs
    lock = store.Run(results / "shared" / spec.run_id).lock_path
    # Another worker holds the run: it is skipped, not trained.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from bench.pipeline import claims; c = claims.try_claim(sys.argv[1]); "
        "print(c is not None, flush=True); time.sleep(600)"), str(lock)],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        err = run_here(capsys, "run", suite, "--results", str(results), "--no-report")
        assert "taken by another worker" in err and started(err) == []
        assert claims.try_claim(lock) is None
    finally:
        holder.send_signal(signal.SIGKILL)  # the worker dies; the OS drops its lock
        holder.wait()
    err = run_here(capsys, "run", suite, "--results", str(results), "--no-report")
    assert started(err) == [spec.run_id]
    claim = claims.try_claim(lock)
    assert claim is not None
    claim.release()


def test_lock_files_follow_the_umask_and_other_users_locks_still_lock(tmp_path, monkeypatch):
    old = os.umask(0o002)
    try:
        with claims.try_claim(tmp_path / ".lock") as claim:
            assert claim is not None
            assert (tmp_path / ".lock").stat().st_mode & 0o777 == 0o664  # group may lock it
    finally:
        os.umask(old)
    real_open = os.open

    def not_ours(path, flags, *mode):  # another user's 0644 lock file: no write access
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *mode)

    monkeypatch.setattr(os, "open", not_ours)
    claim = claims.try_claim(tmp_path / ".lock")
    assert claim is not None
    monkeypatch.undo()
    assert claims.try_claim(tmp_path / ".lock") is None  # held through the read-only fd
    claim.release()


def test_two_workers_share_a_study(tmp_path):
    raw = {**SUITE, "methods": [{"name": "boostnet", "options": {"temperature": "tuned"}}],
           "seeds": [0], "training": {**SUITE["training"], "epochs": 1},
           "tune": {"trials": 4, "pruner": "none", "sampler": {"name": "random", "seed": 0}}}
    suite = write(tmp_path, raw)
    results = tmp_path / "results"
    finish([bench("tune", suite, "--results", str(results)) for _ in range(2)])
    import optuna
    s = load_suite(suite)
    (spec,) = select_targets(s)
    study = optuna.load_study(study_name=study_name(spec, s.config.tune),
                              storage=store.Suite(results / "shared").default_storage())
    ts = study.get_trials()
    # Trials are numbered by the storage: none is run twice. Both workers may start a
    # trial at the same moment when one is left, so the total may exceed 4 by one.
    assert 4 <= len(ts) <= 5 and all(t.state.name == "COMPLETE" for t in ts)
    assert sum(bool(t.user_attrs.get("baseline")) for t in ts) == 1
    assert len({t.params["temperature"] for t in ts}) == len(ts)
    assert len({t.user_attrs["worker"] for t in ts}) == 2  # both took part


def test_shard_unshard_roundtrip():
    idx = torch.arange(7)
    parts = [shard(idx, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert unshard(parts, 7).tolist() == list(range(7))


def test_ddp_two_processes_gloo_match_one_process(tmp_path, capsys):
    """torchrun, 2 CPU processes x batch 32 vs 1 process x batch 64: the same samples per
    step and the same averaged gradient, except batch norm, whose batch statistics are per
    process (SyncBatchNorm has no CPU kernel), so the two drift apart a little. Tolerance:
    F_n logits within 10% of their largest magnitude and >= 95% of the predictions equal
    (measured, 3 epochs of 5 steps: boostnet 7% and 99.5%, sequential 1% and 100%)."""
    raw = {**SUITE, "methods": ["boostnet", "sequential"], "seeds": [0],
           "training": {**SUITE["training"], "epochs": 3}}
    suite = write(tmp_path, raw)
    r1, r2 = tmp_path / "one", tmp_path / "two"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"]
    p2 = subprocess.run([*torchrun, "-m", "bench", "run", suite, "--results", str(r2),
                         "--no-report"], cwd=ROOT, env=env(), capture_output=True,
                        text=True, timeout=300)
    assert p2.returncode == 0, p2.stderr[-3000:]
    # Progress from rank 0 only: one bar and one final line per run.
    lines = p2.stderr.replace("\r", "\n").splitlines()
    assert [line.split()[:2] for line in lines if "-> done" in line] == \
        [["[run", "1/2]"], ["[run", "2/2]"]]
    assert sum("setting up" in line for line in lines) == 2
    run_here(capsys, "run", suite, "--results", str(r1), "--no-report", "--quiet",
             "--set", "training.batch_size=64")
    for method in ("boostnet", "sequential"):
        (d1,) = (r1 / "shared").glob(f"*--{method}--*")
        (d2,) = (r2 / "shared").glob(f"*--{method}--*")
        pr1 = torch.load(d1 / "predictions.pt", weights_only=True)
        pr2 = torch.load(d2 / "predictions.pt", weights_only=True)
        for split in ("heldout", "test"):
            assert torch.equal(pr1[split]["targets"], pr2[split]["targets"])  # padding gone
            x, y = pr1[split]["logits"].float(), pr2[split]["logits"].float()
            diff, scale = (x - y).abs().max().item(), x.abs().max().item()
            assert diff < 0.1 * scale, (method, split, diff, scale)
            assert (x.argmax(-1) == y.argmax(-1)).float().mean() >= 0.95
        status = json.loads((d2 / "status.json").read_text())
        assert status["state"] == "done"
        assert not list((r2 / "shared").glob("*/.*.tmp"))


def test_sync_bn_on_cpu_is_a_clear_error():
    training = TrainingConfig(sync_bn=True)
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        check_sync_bn(training, torch.device("cpu"), Dist(0, 2))
    check_sync_bn(training, torch.device("cpu"), Dist())  # one process: no-op


def test_agreement_of_one_process_is_its_own_error():
    assert agree("ValueError: x", Dist()) == ["ValueError: x"]
    assert agree(None, Dist()) == [None]


FAILING = '''
import os

import torch

from methods import NUMBER, Method, Option, register


@register("fails_on")
class FailsOn(Method):
    """Joint training that raises on one rank (or all: -1) at its second training step."""

    OPTIONS = Method.OPTIONS + (Option("rank", NUMBER, -1.0, "the rank that fails"),)

    def __init__(self, **options):
        super().__init__(**options)
        self.steps = 0

    def sample_losses(self, outs, targets):
        if outs[0].requires_grad:  # training, not the suite's dry run
            self.steps += 1
            mine = self.rank in (-1, int(os.environ.get("RANK", "0")))
            if mine and self.steps == 2:
                raise RuntimeError(f"boom on rank {os.environ.get('RANK')}")
        return super().sample_losses(outs, targets)
'''


def torchrun(suite: str, results: Path, timeout: int = 240, **env_extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "bench", "run", suite, "--results", str(results), "--no-report", "--quiet"]
    return subprocess.run(cmd, cwd=ROOT, env={**env(), **env_extra}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_ddp_a_run_failing_on_every_rank_fails_alone_and_the_suite_goes_on(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING)
    raw = {**SUITE, "plugins": ["failing.py"], "seeds": [0],
           "methods": [{"name": "fails_on", "label": "fails"}, "joint"]}
    results = tmp_path / "results"
    out = torchrun(write(tmp_path, raw), results)
    assert out.returncode != 0  # a run failed: exit 1 on rank 0
    states = {p.parent.name.split("--")[1]: json.loads(p.read_text())
              for p in (results / "shared").glob("*/status.json")}
    assert states["joint"]["state"] == "done"
    failed = states["fails"]
    assert failed["state"] == "failed"
    assert failed["error"] == ("rank 0: RuntimeError: boom on rank 0; "
                               "rank 1: RuntimeError: boom on rank 1")
    assert "in sample_losses" in failed["traceback"]
    assert "1 run(s) failed" in out.stderr


@pytest.mark.slow
def test_ddp_a_rank_failing_alone_ends_the_job_instead_of_hanging(tmp_path):
    """Rank 1 raises in the middle of an epoch while rank 0 waits in DDP's all-reduce: rank
    1 gives up waiting for the vote after BENCH_AGREEMENT_TIMEOUT seconds and ends, and
    torchrun ends rank 0; the next run resumes."""
    (tmp_path / "failing.py").write_text(FAILING)
    raw = {**SUITE, "plugins": ["failing.py"], "seeds": [0],
           "methods": [{"name": "fails_on", "label": "fails", "options": {"rank": 1}}]}
    started = time.monotonic()
    out = torchrun(write(tmp_path, raw), tmp_path / "results", timeout=200,
                   BENCH_AGREEMENT_TIMEOUT="5")
    assert out.returncode != 0
    assert time.monotonic() - started < 120
    assert "rank 1 failed (RuntimeError: boom on rank 1) and the other ranks did not " \
           "stop within 5 s" in out.stderr
    (status,) = (tmp_path / "results" / "shared").glob("*/status.json")
    assert json.loads(status.read_text())["state"] == "running"
