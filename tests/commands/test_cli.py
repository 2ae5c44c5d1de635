"""End to end through the command line, in subprocesses, on CPU."""
import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite_fixtures import TINY

ROOT = Path(__file__).resolve().parents[2]


def bench(*args, cwd, timeout=300, **popen):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def metrics_of(results: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text())
            for p in sorted(results.glob("tiny/*/metrics.json"))}


def test_run_writes_the_store_and_results_prints_a_table(suite, tmp_path):
    done = bench("run", str(suite), "--no-report", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    runs = [p for p in (tmp_path / "results" / "tiny").iterdir() if p.is_dir()]
    assert len(runs) == 2
    for run in runs:
        for name in ["config.json", "status.json", "environment.json", "costs.json",
                     "history.csv", "heldout_index.json", "predictions.pt", "metrics.json"]:
            assert (run / name).exists(), f"{run.name}/{name}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert len(metrics["anytime"]) == 3 and len(metrics["budgeted"]) == 2
        assert len(metrics["curve"]) == 39
        assert json.loads((run / "status.json").read_text())["state"] == "done"
        assert len(json.loads((run / "heldout_index.json").read_text())["indices"]) == 64
        environment = json.loads((run / "environment.json").read_text())
        assert "cpu_batch_norm" not in environment  # no C kernel any more: nothing to say
    summary = (tmp_path / "results" / "tiny" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 2 * (3 + 2)
    again = bench("run", str(suite), "--no-report", cwd=tmp_path)
    assert again.returncode == 0 and again.stderr.count("(done, skipped)") == 2
    table = bench("results", str(suite), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "boostnet" in table.stdout and "joint" in table.stdout


def test_dry_run_lists_runs_with_costs_and_trains_nothing(suite, tmp_path):
    out = bench("run", str(suite), "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("exits (MMACs):") == 2
    assert not (tmp_path / "results").exists()


def test_bad_suite_exits_2_without_traceback_or_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("methods: [joint, boostnet]", "methods: [joint, adaboost]"))
    out = bench("run", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    assert "bad.yaml" in out.stderr and "methods[1]" in out.stderr and "boostnet" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists()


def test_bad_override_exits_2(suite, tmp_path):
    out = bench("run", str(suite), "--set", "training.epochz=3", cwd=tmp_path)
    assert out.returncode == 2 and "epochz" in out.stderr and "Traceback" not in out.stderr


def test_missing_data_exits_2_naming_the_folder(tmp_path):
    cifar = tmp_path / "cifar.yaml"
    cifar.write_text(TINY.replace("name: synthetic", f"name: cifar100\n  root: {tmp_path}/nowhere")
                     .replace("options: {train_size: 160, test_size: 64, image_size: 16}", "")
                     .replace("{name: chain_tiny, overrides: {image_size: 16}}", "chain_tiny"))
    out = bench("run", str(cifar), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    if importlib.util.find_spec("torchvision") is None:  # e.g. the torch 2.13.0 CPU build
        assert "needs torchvision" in out.stderr
    else:
        assert "nowhere" in out.stderr and "download" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists()


def test_resume_after_kill_gives_the_same_metrics(suite, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    assert bench("run", str(suite), "--no-report", "--quiet", "--only", "*boostnet*",
                 cwd=straight).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite), "--no-report",
                             "--quiet", "--only", "*boostnet*"], cwd=killed, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(killed.glob("results/tiny/*/checkpoint.pt")):  # first epoch written
        assert proc.poll() is None and time.time() < deadline, "run ended before a checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = json.loads(next(killed.glob("results/tiny/*/status.json")).read_text())
    assert status["state"] == "running" and status["epoch"] < 3
    resumed = bench("run", str(suite), "--no-report", "--quiet", "--only", "*boostnet*",
                    cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    a, b = metrics_of(straight / "results"), metrics_of(killed / "results")
    assert a.keys() == b.keys() and len(a) == 1
    assert a == b


def test_nan_run_fails_with_exit_1_and_others_go_on(suite, tmp_path):
    bad_lr = suite.read_text().replace("epochs: 3", "epochs: 3\n  optimizer: {lr: 1.0e+30}")
    suite.write_text(bad_lr)
    out = bench("run", str(suite), "--no-report", "--quiet", cwd=tmp_path)
    assert out.returncode == 1
    states = [json.loads(p.read_text()) for p in tmp_path.glob("results/tiny/*/status.json")]
    assert len(states) == 2 and all(s["state"] == "failed" for s in states)
    assert all("nan" in s["error"] or "inf" in s["error"] for s in states)


def test_ctrl_c_while_the_modules_load_is_one_line_and_exit_130(tmp_path):
    """The interrupt arrives in the middle of `import torch` (a SIGINT at a moment chosen
    deterministically: when the import system looks torch up)."""
    script = (
        "import os, runpy, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['bench', 'results', 'x']\n"
        "runpy.run_module('bench', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr) == (130, "interrupted\n")


def test_a_reader_that_goes_away_is_not_an_error(tmp_path):
    """`bench results ... | head`: the pipe closes before the table is printed."""
    sys.path.insert(0, str(ROOT / "tests"))
    from report_fixtures import make_suite
    make_suite(tmp_path / "results", "demo", [{"run_id": "r", "method": "joint", "m": 20}],
               name="demo")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "results", "demo"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before the modules have loaded: the first print meets a closed pipe
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_a_full_disk_fails_the_run_names_the_file_keeps_the_summary_and_exit_1(suite,
                                                                                tmp_path):
    """A real failed write: a file-size limit below the checkpoint's size (as a disk with
    that much room left). The run fails naming its checkpoint, the report cannot copy
    plotly.min.js: said after the summary, and no part of it is left."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore", "BENCH_NATIVE_BATCHNORM": "0",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(suite), "--only", "*joint*", "--quiet",
         "--set", "training.epochs=1"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000)))
    assert done.returncode == 1, done.stderr
    (run,) = (tmp_path / "results" / "tiny").glob("chain_tiny--joint--*")
    lines = done.stderr.splitlines()
    assert lines[-3] == "1 run(s) failed (the status.json of a run that started holds the " \
                        "traceback):"
    assert lines[-2].startswith(f"  {run.name}: CannotWrite: ") and \
        lines[-2].endswith(f" while writing results/tiny/{run.name}/checkpoint.pt")
    assert lines[-1].startswith("error: report not written: ") and \
        lines[-1].endswith(" while writing reports/assets/plotly.min.js")
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")
                 or p.name == "plotly.min.js"]
    assert leftovers == []
