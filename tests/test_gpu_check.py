"""scripts/gpu-check.sh and its Python parts (scripts/gpu_check.py), on a CPU with tiny
settings: the shell script parses; two workers side by side count their steps and the
aggregate adds up; evaluation times a forward pass; the table shows every row; CUDA graphs
on a CPU fail with the clear line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--backbone", "chain_tiny", "--classes", "5"]


def gpu_check(*args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_the_shell_script_parses_and_its_limits_fit_ten_minutes():
    script = (ROOT / "scripts" / "gpu-check.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu-check.sh")]).returncode == 0
    limits = [int(line.split()[2]) for line in script.splitlines()
              if line.startswith(("train train-", "step ")) and line.split()[2].isdigit()]
    limits += [50, 60, 75]  # the K = 2, 4, 8 rows
    assert sum(limits) <= 570, limits


@pytest.mark.slow
def test_two_runs_side_by_side_add_up_and_the_table_shows_them(tmp_path):
    table = tmp_path / "table.jsonl"
    out = gpu_check("throughput", *TINY, "--batch", "8", "--epoch-steps", "2", "--window", "1",
                    "--runs", "2", "--setting", "fp32", "--table", str(table))
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["runs"] == 2 and row["setting"] == "fp32" and row["device"] == "cpu"
    assert row["window_s"] >= 1 and row["seconds_per_step"] > 0
    assert row["epoch_s_per_run_equivalent"] == pytest.approx(50_000 / row["images_per_s"])
    # two workers, each at least one round of 2 steps of 8 images in the window
    assert row["images_per_s"] * row["window_s"] >= 2 * 2 * 8 - 1e-6
    ev = gpu_check("eval", *TINY, "--batch", "16", "--repeats", "2", "--table", str(table))
    assert ev.returncode == 0, ev.stderr
    timed = json.loads(ev.stdout)
    assert timed["fp32_test_set_s"] == pytest.approx(10_000 / timed["fp32_images_per_s"])
    shown = gpu_check("table", str(table))
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("| configuration | runs on the device |")
    assert lines[2].startswith("| fp32 | 2 | ") and "evaluation, chain_tiny, batch 16" in \
        shown.stdout


def test_cuda_graphs_on_a_cpu_fail_with_the_clear_line(tmp_path):
    out = gpu_check("worker", *TINY, "--batch", "4", "--epoch-steps", "1", "--window", "0.1",
                    "--setting", "bf16-graphs", "--barrier", str(tmp_path))
    assert out.returncode != 0
    assert "training.cuda_graphs is true, but method 'boostnet' trains on cpu" in out.stderr
