"""``bench latency``: a finished run's network really exiting early, timed.

Per exit k, every test image runs to exit k (cumulative latency, the cost of "always exit
k"); per fixed budget of the suite, every image leaves at the first exit whose confidence
reaches the budget's threshold (fitted on the held-out split when the run was evaluated)
and nothing past its exit runs (bench.inference). Times are ms per image, median, p95 and
mean over every timed batch of every repeat (bench.inference.timing). Every configuration
(each exit, each budget) is timed on a batch before the next batch is taken, so that a
shared machine's changing load falls on all of them alike. This module reads the finished
run and puts latency.json's content together; the store writes it.

Each budget's decisions are checked twice (fractions in [0, 1]):

- ``agreement``: against a simulation (bench.inference.simulate) from a full forward of
  the same batch in the same process: the real exits must reproduce it, so it is 1.0;
- ``agreement_saved``: against the simulation from the run's saved float16 predictions;
  the only differences expected are images whose confidence lies within rounding of a
  threshold, i.e. the threshold sits between the saved and the recomputed confidence
  (``saved_differences``, ``saved_differences_near_threshold``).

CPU time is wall time (``time.perf_counter``) with ``torch.set_num_threads(threads)``; CUDA
time comes from CUDA events recorded around each batch, read after ``synchronize``.
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

import bench
from bench.errors import UsageError
from bench.evaluate import confidences, forced_exit
from bench.fingerprint import fingerprint
from bench.inference import early_exit, simulate, time_interleaved, timer_for
from bench.pipeline.restore import Restored, load_splits, thresholds_of
from bench.store import now


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"  # cpu | cuda | cuda:N
    batch_size: int = 1  # 1: one image at a time; more: images that exit leave the batch
    threads: int = 1  # torch.set_num_threads during the measurement
    warmup: int = 10  # untimed batches before each timed configuration
    repeats: int = 3  # timed passes over the images
    images: int | None = None  # the first k test images (None: all)

    def check(self) -> None:
        for name in ("batch_size", "threads", "repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, "
                                 f"got {value!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise UsageError(f"--warmup must be an integer >= 0, got {self.warmup!r}")
        if self.images is not None and (not isinstance(self.images, int) or self.images < 1):
            raise UsageError(f"--images must be a positive integer, got {self.images!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise UsageError(f"--device must be cpu or cuda[:N], got {self.device!r}")


# -- decisions ------------------------------------------------------------------------
def decide(r: Restored, thresholds: list[float], batches: list[torch.Tensor]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real early exits over ``batches``: (classes, exits, confidences) on the CPU."""
    parts = [early_exit(r.model, r.method.combine, thresholds, x) for x in batches]
    return tuple(torch.cat(p) for p in zip(*parts))


@torch.no_grad()
def full_forward(r: Restored, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Raw logits f_n [M, C] of every exit, each batch run to the last exit (CPU)."""
    r.model.eval()
    outs = [[f.float().cpu() for f in r.model(x)] for x in batches]
    return [torch.cat(per_exit) for per_exit in zip(*outs)]


def near_threshold(now_conf: torch.Tensor, saved_conf: torch.Tensor,
                   thresholds: Sequence[float]) -> torch.Tensor:
    """[M] bool: some exit's threshold (the last exit's excluded) lies between the image's
    recomputed and saved confidence, ends included: rounding can flip its decision."""
    t = torch.tensor(thresholds, dtype=torch.float64)[:-1, None]
    low, high = torch.minimum(now_conf, saved_conf)[:-1], torch.maximum(now_conf, saved_conf)[:-1]
    return ((low <= t) & (t <= high)).any(dim=0)


def agreement(real, other) -> torch.Tensor:
    """[M] bool: same exit and same class."""
    return (real[0] == other[0]) & (real[1] == other[1])


def budget_result(r: Restored, entry: dict, real, full: list[torch.Tensor],
                  saved: torch.Tensor, targets: torch.Tensor) -> dict:
    """Accuracy, exit shares, realized MMACs and both agreements of one budget's real exits."""
    thresholds = thresholds_of(entry)
    same = agreement(real, simulate(full, r.method.combine, thresholds))
    saved_same = agreement(real, simulate(list(saved), None, thresholds))
    preds = r.method.combine(full)
    now_conf, saved_conf = confidences(preds)[0], confidences(saved)[0]
    near = near_threshold(now_conf, saved_conf, thresholds)
    n = len(targets)
    shares = torch.bincount(real[1], minlength=r.model.num_exits).double() / n
    return {"budget_mmacs": float(entry["budget_mmacs"]), "thresholds": thresholds,
            "accuracy": 100.0 * float((real[0] == targets).double().mean()),
            "metrics_accuracy": entry.get("accuracy"),
            "exit_shares": shares.tolist(),
            "mmacs": float((shares * torch.tensor(r.exit_mmacs, dtype=torch.float64)).sum()),
            "agreement": float(same.double().mean()),
            "agreement_saved": float(saved_same.double().mean()),
            "saved_differences": int((~saved_same).sum()),
            "saved_differences_near_threshold": int((~saved_same & near).sum())}


# -- the measurement ------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device, threads: int) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"hostname": platform.node(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
            "threads": threads, "code_version": bench.__version__}


def test_images(r: Restored, settings: Settings, device: torch.device, data_root: Path | None
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The first ``settings.images`` test images in batches of ``settings.batch_size`` on
    ``device``, and their targets (CPU)."""
    splits = load_splits(r.config, r.run.path, data_root)
    xs, ys, have = [], [], 0
    for x, y in splits.batches("test", max(settings.batch_size, 256)):
        xs.append(x.cpu())
        ys.append(y.cpu())
        have += len(y)
        if settings.images is not None and have >= settings.images:
            break
    x, y = torch.cat(xs), torch.cat(ys).long()
    if settings.images is not None:
        x, y = x[:settings.images], y[:settings.images]
    x = x.to(device)
    return list(x.split(settings.batch_size)), y


def measure(r: Restored, settings: Settings, data_root: Path | None = None,
            timer=None) -> tuple[dict, dict]:
    """(latency.json's content, the real decisions per budget: {budget_mmacs: (classes,
    exits, confidences)}) for the restored run ``r``."""
    settings.check()
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    if not r.budgets:
        raise UsageError(f"{r.run.path}: metrics.json has no fixed budgets (a run without a "
                         "held-out split has no thresholds)")
    saved = r.run.load_predictions()["test"]["logits"]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    load_before = os.getloadavg()
    try:
        r.model.to(device)
        batches, targets = test_images(r, settings, device, data_root)
        saved = saved[:, :len(targets)].float()
        if saved.shape[1] != len(targets):
            raise UsageError(f"{r.run.path}: predictions.pt has {saved.shape[1]} test images, "
                             f"the data set {len(targets)}")
        timer = timer or timer_for(device)
        n = r.model.num_exits
        plans = [forced_exit(k, n) for k in range(n)] + [thresholds_of(e) for e in r.budgets]
        timed = time_interleaved([_runner(r, t) for t in plans], batches, timer,
                                 settings.warmup, settings.repeats)
        exits = [{"exit": k + 1, "mmacs": r.exit_mmacs[k], **timed[k]} for k in range(n)]
        full = full_forward(r, batches)
        budgets, decisions = [], {}
        for entry, stats in zip(r.budgets, timed[n:]):
            real = decide(r, thresholds_of(entry), batches)
            row = {**budget_result(r, entry, real, full, saved, targets), **stats}
            row["speedup"] = exits[-1]["mean_ms"] / row["mean_ms"]
            row["speedup_median"] = exits[-1]["median_ms"] / row["median_ms"]
            row["mmacs_ratio"] = r.exit_mmacs[-1] / row["mmacs"]
            budgets.append(row)
            decisions[row["budget_mmacs"]] = real
    finally:
        torch.set_num_threads(previous_threads)
        r.model.to("cpu")
    result = {"run_id": r.config.get("run_id", r.run.run_id), "date": now(),
              "device": str(device), "timing": "cuda events" if device.type == "cuda"
              else "wall clock", **asdict(settings), "images": len(targets),
              "machine": machine(device, settings.threads),
              "load_before": list(load_before), "load_after": list(os.getloadavg()),
              "code": fingerprint(git=False)["sha256"],
              "exits": exits, "budgets": budgets}
    return result, decisions


def _runner(r: Restored, thresholds: list[float]) -> Callable[[torch.Tensor], object]:
    return lambda x: early_exit(r.model, r.method.combine, thresholds, x)
