"""The measurements of scripts/gpu-check.sh (issue 26): training throughput of one backbone /
method at one batch size with K runs side by side, and evaluation throughput; each prints
one JSON line and, with --table, appends it to a file that ``table`` turns into the rows
to paste into docs/benchmarks.md.

  throughput --setting fp32|bf16|bf16-graphs --runs K: K worker processes (as
      ``bench run --runs-per-device K`` starts them), each training on random CIFAR-sized
      batches augmented on the device, as the trainer's data are; every worker warms up
      (the CUDA graph recorded by then), waits for the others, then counts the steps it
      takes in --window seconds. Aggregate images/s = all workers' images / window; a
      50,000-image epoch "per run equivalent" = 50,000 / aggregate images/s. A fraction of
      an epoch is timed and extrapolated (the window, not a whole epoch).
  eval --batch 1024: forward passes over every exit (float32, no gradient; also bf16),
      images/s and the seconds for CIFAR's 10,000 test images.
  table FILE: the rows.

On a CPU (``--device cpu`` with a tiny backbone) the same code runs in seconds: the test
of this script (tests/test_gpu_check.py) does that.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import methods  # noqa: E402
from bench import backbones  # noqa: E402
from bench.config import OptimizerConfig  # noqa: E402
from bench.engine import cuda_graphs  # noqa: E402
from bench.pipeline.speed.steps import (epoch_data, method_step, random_batch,  # noqa: E402
                                        synchronize)

SETTINGS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16-graphs": ("bf16", True)}
EPOCH_IMAGES = 50_000  # CIFAR's training set: the 63 s fp32 figure is per 50,000 images
TEST_IMAGES = 10_000


def worker(a) -> dict:
    """One run's steps: warm up, meet the others at the barrier, count steps in the
    window."""
    torch.manual_seed(a.seed)
    precision, graphs = SETTINGS[a.setting]
    model = backbones.create(a.backbone, num_classes=a.classes)
    step = method_step(model, methods.create(a.method), OptimizerConfig(), device=a.device,
                       precision_setting=precision, cuda_graphs=graphs)
    data = epoch_data(a.batch, a.epoch_steps, model.input_size, a.classes, a.seed)

    def one_round(epoch: int) -> int:
        n = 0
        for x, y in data.batches("train", a.batch, device=a.device, epoch=epoch, seed=a.seed):
            step(x, y)
            n += 1
        synchronize(a.device)
        return n

    warm = 0
    while warm < cuda_graphs.WARMUP_STEPS + 2:  # eager warm-up and the recording included
        warm += one_round(warm)
    barrier = Path(a.barrier)
    (barrier / f"ready-{os.getpid()}").touch()
    deadline = time.time() + 90  # a worker that failed to start does not hold the rest
    while len(list(barrier.glob("ready-*"))) < a.runs and time.time() < deadline:
        time.sleep(0.01)
    started, steps, epoch = time.perf_counter(), 0, 1000
    while time.perf_counter() - started < a.window:
        steps += one_round(epoch)
        epoch += 1
    seconds = time.perf_counter() - started
    return {"steps": steps, "seconds": seconds, "seconds_per_step": seconds / steps}


def throughput(a) -> dict:
    """K workers at once; their steps added up."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as barrier:
        command = [sys.executable, __file__, "worker", *_shared(a), "--barrier", barrier]
        threads = str(max(1, len(os.sched_getaffinity(0)) // a.runs))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
                 for _ in range(a.runs)]
        outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed (exit codes {[p.returncode for p in procs]})")
    workers = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    images = sum(w["steps"] for w in workers) * a.batch
    window = max(w["seconds"] for w in workers)
    per_second = images / window
    return {"kind": "train", "setting": a.setting, "runs": a.runs, "backbone": a.backbone,
            "method": a.method, "batch": a.batch, "device": _device_name(a.device),
            "window_s": round(window, 2),
            "seconds_per_step": statistics.median(w["seconds_per_step"] for w in workers),
            "images_per_s": per_second, "epoch_s_per_run_equivalent":
                EPOCH_IMAGES / per_second}


def evaluation(a) -> dict:
    torch.manual_seed(a.seed)
    model = backbones.create(a.backbone, num_classes=a.classes).to(a.device).eval()
    x, _ = random_batch(a.batch, model.input_size, a.classes, a.seed, a.device)
    out = {"kind": "eval", "backbone": a.backbone, "batch": a.batch,
           "device": _device_name(a.device)}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        times = []
        for i in range(a.repeats + 1):
            started = time.perf_counter()
            with torch.no_grad(), torch.autocast(torch.device(a.device).type, dtype=dtype,
                                                 enabled=dtype is not None):
                model(x)
            synchronize(a.device)
            if i:  # the first is a warm-up
                times.append(time.perf_counter() - started)
        per_image = statistics.median(times) / a.batch
        out[f"{name}_images_per_s"] = 1 / per_image
        out[f"{name}_test_set_s"] = TEST_IMAGES * per_image
    return out


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = ["| configuration | runs on the device | s/step (median over runs) | images/s "
           "(all runs) | 50,000-image epoch per run equivalent | 300 epochs per run "
           "equivalent |", "|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["kind"] == "train"):
        epoch = r["epoch_s_per_run_equivalent"]
        out.append(f"| {r['setting']} | {r['runs']} | {r['seconds_per_step']:.4f} | "
                   f"{r['images_per_s']:.0f} | {epoch:.1f} s | {300 * epoch / 3600:.2f} h |")
    for r in (r for r in rows if r["kind"] == "eval"):
        out.append(f"\nevaluation, {r['backbone']}, batch {r['batch']}: fp32 "
                   f"{r['fp32_images_per_s']:.0f} images/s ({r['fp32_test_set_s']:.2f} s for "
                   f"10,000 test images), bf16 {r['bf16_images_per_s']:.0f} images/s "
                   f"({r['bf16_test_set_s']:.2f} s)")
    return "\n".join(out)


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def _shared(a) -> list[str]:
    return ["--setting", a.setting, "--runs", str(a.runs), "--window", str(a.window),
            "--device", a.device, "--backbone", a.backbone, "--method", a.method,
            "--batch", str(a.batch), "--epoch-steps", str(a.epoch_steps),
            "--classes", str(a.classes), "--seed", str(a.seed)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("throughput", "worker", "eval"):
        s = sub.add_parser(name)
        s.add_argument("--device", default="cuda")
        s.add_argument("--backbone", default="msdnet10_cifar")
        s.add_argument("--classes", type=int, default=100)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--table", type=Path, help="append the JSON line to this file")
        if name == "eval":
            s.add_argument("--batch", type=int, default=1024)
            s.add_argument("--repeats", type=int, default=5)
            continue
        s.add_argument("--setting", choices=tuple(SETTINGS), default="bf16-graphs")
        s.add_argument("--runs", type=int, default=1)
        s.add_argument("--window", type=float, default=15.0, help="timed seconds")
        s.add_argument("--method", default="boostnet")
        s.add_argument("--batch", type=int, default=64)
        s.add_argument("--epoch-steps", type=int, default=50, help="steps per round")
        s.add_argument("--barrier", default=None)
    t = sub.add_parser("table")
    t.add_argument("file", type=Path)
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if a.command == "table":
        print(table(a.file))
        return 0
    result = {"worker": worker, "throughput": throughput, "eval": evaluation}[a.command](a)
    line = json.dumps(result)
    print(line, flush=True)
    if a.command != "worker" and a.table is not None:
        with a.table.open("a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
