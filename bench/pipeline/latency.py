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

``runtime`` ``onnxruntime`` times the run's stage graphs in ONNX Runtime instead (exported
for the measurement into a temporary folder, bench.inference.onnx_export; ``threads`` its
intra-op threads): the same thresholds and decisions, made outside PyTorch; its
``agreement`` compares its real exits with the simulation from PyTorch's full forward, so
1.0 says that both runtimes send every image to the same exit with the same class. On
CUDA, the energy per image of every exit and budget comes from NVML's counter where it
can be read (bench.inference.energy); elsewhere ``energy`` says why there is none.

latency.json keeps every measurement (bench.store.latency): one per runtime, device, batch
size and threads, the newest of each.
"""
from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

import bench
from bench.errors import UsageError
from bench.evaluate import confidences, forced_exit
from bench.fingerprint import fingerprint
from bench.inference import (OnnxModel, early_exit, export_stages, simulate,
                             time_interleaved, timer_for)
from bench.inference.energy import energy_per_image, open_meter
from bench.pipeline.restore import Restored, load_splits, thresholds_of
from bench.store import now
from bench.store.latency import find, measurements, merge

RUNTIMES = ("pytorch", "onnxruntime")
__all__ = ["RUNTIMES", "Settings", "agreement", "budget_result", "decide", "find",
           "full_forward", "machine", "measure", "measure_all", "measurements", "merge",
           "near_threshold", "onnx_model", "pytorch_exits", "test_data", "test_images"]


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"  # cpu | cuda | cuda:N
    batch_size: int = 1  # 1: one image at a time; more: images that exit leave the batch
    threads: int = 1  # torch.set_num_threads during the measurement
    warmup: int = 10  # untimed batches before each timed configuration
    repeats: int = 3  # timed passes over the images
    images: int | None = None  # the first k test images (None: all)
    runtime: str = "pytorch"  # pytorch | onnxruntime (the stage graphs, CPU)

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
        if self.runtime not in RUNTIMES:
            raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, got "
                             f"{self.runtime!r}")
        if self.runtime == "onnxruntime" and self.device != "cpu":
            raise UsageError("--runtime onnxruntime runs the stage graphs on the CPU "
                             f"(CPUExecutionProvider); --device {self.device} is for pytorch")


# -- decisions ------------------------------------------------------------------------
Exits = Callable[[list[float], torch.Tensor], tuple]  # (thresholds, x) -> real early exits


def pytorch_exits(r: Restored) -> Exits:
    return lambda thresholds, x: early_exit(r.model, r.method.combine, thresholds, x)


def decide(r: Restored, thresholds: list[float], batches: list[torch.Tensor],
           exits: Exits | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real early exits over ``batches`` (``exits``: PyTorch's by default): (classes,
    exits, confidences) on the CPU."""
    exits = exits or pytorch_exits(r)
    parts = [exits(thresholds, x) for x in batches]
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


def test_data(r: Restored, images: int | None, data_root: Path | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``images`` test images (all: None) and their targets, on the CPU."""
    splits = load_splits(r.config, r.run.path, data_root)
    xs, ys, have = [], [], 0
    for x, y in splits.batches("test", 256):
        xs.append(x.cpu())
        ys.append(y.cpu())
        have += len(y)
        if images is not None and have >= images:
            break
    x, y = torch.cat(xs), torch.cat(ys).long()
    return (x[:images], y[:images]) if images is not None else (x, y)


def test_images(r: Restored, settings: Settings, device: torch.device, data_root: Path | None
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The first ``settings.images`` test images in batches of ``settings.batch_size`` on
    ``device``, and their targets (CPU)."""
    x, y = test_data(r, settings.images, data_root)
    return list(x.to(device).split(settings.batch_size)), y


def onnx_model(r: Restored, folder: Path, threads: int) -> OnnxModel:
    """The run's stage graphs exported into ``folder`` and loaded in ONNX Runtime with
    ``threads`` intra-op threads (the model is on the CPU)."""
    stages = export_stages(r.model, r.method.combine, folder, r.model.input_size)
    manifest = {"stages": stages, "exit_mmacs": r.exit_mmacs, "budgets": r.budgets,
                "curve": []}
    return OnnxModel(folder, manifest, threads=threads)


def measure(r: Restored, settings: Settings, data_root: Path | None = None,
            timer=None, data: tuple[torch.Tensor, torch.Tensor] | None = None,
            onnx: OnnxModel | None = None) -> tuple[dict, dict]:
    """(one measurement: latency.json's content for ``settings``, the real decisions per
    budget: {budget_mmacs: (classes, exits, confidences)}) for the restored run ``r``.
    ``data``: the test images and targets (else read, ``settings.images`` of them);
    ``onnx``: the run's OnnxModel for runtime onnxruntime (else exported here)."""
    settings.check()
    if settings.runtime == "onnxruntime" and onnx is None:
        with tempfile.TemporaryDirectory(prefix="bench-latency-onnx-") as folder:
            return measure(r, settings, data_root, timer, data,
                           onnx_model(r, Path(folder), settings.threads))
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    saved = r.run.load_predictions()["test"]["logits"]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    load_before = os.getloadavg()
    try:
        r.model.to(device)
        x, targets = data if data is not None else test_data(r, settings.images, data_root)
        batches = list(x.to(device).split(settings.batch_size))
        saved = saved[:, :len(targets)].float()
        if saved.shape[1] != len(targets):
            raise UsageError(f"{r.run.path}: predictions.pt has {saved.shape[1]} test images, "
                             f"the data set {len(targets)}")
        timer = timer or timer_for(device)
        exits_of = pytorch_exits(r) if onnx is None else onnx.early_exit
        n = r.model.num_exits
        plans = [forced_exit(k, n) for k in range(n)] + [thresholds_of(e) for e in r.budgets]
        runners = [_runner(exits_of, t) for t in plans]
        timed = time_interleaved(runners, batches, timer, settings.warmup, settings.repeats)
        energy, joules = _energy(device, runners, batches, settings)
        exits = [{"exit": k + 1, "mmacs": r.exit_mmacs[k], **timed[k], **joules(k)}
                 for k in range(n)]
        full = full_forward(r, batches)
        budgets, decisions = [], {}
        for i, (entry, stats) in enumerate(zip(r.budgets, timed[n:])):
            real = decide(r, thresholds_of(entry), batches, exits_of)
            row = {**budget_result(r, entry, real, full, saved, targets), **stats,
                   **joules(n + i)}
            row["speedup"] = exits[-1]["mean_ms"] / row["mean_ms"]
            row["speedup_median"] = exits[-1]["median_ms"] / row["median_ms"]
            row["mmacs_ratio"] = r.exit_mmacs[-1] / row["mmacs"]
            budgets.append(row)
            decisions[row["budget_mmacs"]] = real
        logit_difference = None if onnx is None else _logit_difference(r, onnx, batches)
    finally:
        torch.set_num_threads(previous_threads)
        r.model.to("cpu")
    result = {"run_id": r.config.get("run_id", r.run.run_id), "date": now(),
              "runtime": settings.runtime, "device": str(device),
              "timing": "cuda events" if device.type == "cuda" else "wall clock",
              **{k: v for k, v in asdict(settings).items() if k != "runtime"},
              "images": len(targets),
              "machine": machine(device, settings.threads),
              "load_before": list(load_before), "load_after": list(os.getloadavg()),
              "code": fingerprint(git=False)["sha256"], "energy": energy,
              "exits": exits, "budgets": budgets}
    if logit_difference is not None:
        result["max_abs_logit_difference"] = logit_difference
    return result, decisions


def _runner(exits_of: Exits, thresholds: list[float]) -> Callable[[torch.Tensor], object]:
    return lambda x: exits_of(thresholds, x)


def _energy(device: torch.device, runners, batches, settings: Settings):
    """(the measurement's ``energy``: its source or why there is none, a function
    i -> {"energy_mj": mJ per image of runner i} or {})."""
    meter, why = open_meter(device) if settings.runtime == "pytorch" else (
        None, "energy is measured for the pytorch runtime on CUDA only")
    if meter is None:
        return {"available": False, "reason": why}, lambda i: {}
    try:
        values = energy_per_image(meter, runners, batches, torch.cuda.synchronize)
    finally:
        meter.close()
    return {"available": True, "source": why}, lambda i: {"energy_mj": values[i]}


@torch.no_grad()
def _logit_difference(r: Restored, onnx: OnnxModel, batches: list[torch.Tensor]) -> float:
    """The largest |F_n(ONNX Runtime) - F_n(PyTorch)| over every exit and image."""
    worst = 0.0
    for x in batches:
        want = r.method.combine(r.model(x))
        for a, b in zip(want, onnx(x)):
            worst = max(worst, float((a.float().cpu() - b).abs().max()))
    return worst


# -- several measurements -------------------------------------------------------------
def measure_all(r: Restored, settings: Settings, batch_sizes: Sequence[int],
                runtimes: Sequence[str], data_root: Path | None = None,
                say: Callable[[str], None] = lambda _: None) -> list[dict]:
    """One measurement per runtime and batch size (``settings`` gives the rest), the test
    images read once and the stage graphs exported once."""
    for runtime in runtimes:
        replace(settings, runtime=runtime).check()
    for size in batch_sizes:
        replace(settings, batch_size=size).check()
    data = test_data(r, settings.images, data_root)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-onnx-") as folder:
        onnx = (onnx_model(r, Path(folder), settings.threads)
                if "onnxruntime" in runtimes else None)
        for size in batch_sizes:
            for runtime in runtimes:
                say(f"timing {runtime} at batch size {size} ({settings.device}, "
                    f"{settings.threads} thread(s))")
                one = replace(settings, batch_size=size, runtime=runtime)
                out.append(measure(r, one, data_root, data=data,
                                   onnx=onnx if runtime == "onnxruntime" else None)[0])
    return out
