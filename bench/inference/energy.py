"""GPU energy per image from NVML's energy counter, where the hardware tells it.

NVML (pynvml, from the nvidia-ml-py package) reads a GPU's total energy since the driver
loaded, in millijoules (``nvmlDeviceGetTotalEnergyConsumption``, Volta and newer). The
counter covers the whole board (other processes on the same GPU included) and advances in
steps of some milliseconds, so a configuration is run over the images again and again until
at least ``min_seconds`` have passed, and the energy is the difference of the counter over
the images processed. Elsewhere (the CPU, a GPU without the counter, no pynvml) there is
no meter, and :func:`open_meter` says why.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

SOURCE = "NVML total energy counter (nvmlDeviceGetTotalEnergyConsumption), whole GPU"


class EnergyMeter:
    """The energy counter of one GPU: ``read()`` in millijoules."""

    def __init__(self, nvml, handle):
        self.nvml, self.handle = nvml, handle

    def read(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def close(self) -> None:
        """Release NVML (each nvmlInit is counted; one shutdown per init)."""
        self.nvml.nvmlShutdown()


def _import_nvml():
    try:
        import pynvml  # nvidia-ml-py: an optional dependency (the deploy extra)
    except ImportError:
        return None
    return pynvml


def _handle(nvml, device: torch.device, cuda=torch.cuda):
    """NVML's handle of the torch CUDA device: by UUID (CUDA_VISIBLE_DEVICES renumbers
    devices), else by index."""
    index = device.index if device.index is not None else cuda.current_device()
    uuid = getattr(cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except nvml.NVMLError:
            pass
    return nvml.nvmlDeviceGetHandleByIndex(index)


def open_meter(device: torch.device, nvml=None, cuda=torch.cuda
               ) -> tuple[EnergyMeter | None, str]:
    """(a meter, its source) or (None, why there is none) for ``device``. ``nvml``: the
    pynvml module (a stand-in in tests; by default imported if installed)."""
    if device.type != "cuda":
        return None, (f"no energy counter on {device.type}: energy is read from NVML's "
                      "counter of NVIDIA GPUs only")
    nvml = nvml or _import_nvml()
    if nvml is None:
        return None, "pynvml is not installed (pip install nvidia-ml-py, or the deploy extra)"
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        return None, f"NVML cannot read this GPU's energy counter: {err}"
    try:
        meter = EnergyMeter(nvml, _handle(nvml, device, cuda))
        meter.read()  # raises where the GPU has no counter (before Volta)
    except nvml.NVMLError as err:
        nvml.nvmlShutdown()
        return None, f"NVML cannot read this GPU's energy counter: {err}"
    return meter, SOURCE


def energy_per_image(meter: EnergyMeter, runners: Sequence[Callable[[torch.Tensor], object]],
                     batches: list[torch.Tensor], synchronize: Callable[[], None],
                     min_seconds: float = 1.0, clock=time.perf_counter) -> list[float]:
    """Millijoules per image of each runner: passes over ``batches`` until ``min_seconds``
    have passed (at least one), the counter read after ``synchronize`` before and after."""
    out = []
    for run_batch in runners:
        synchronize()
        start, begin, images = meter.read(), clock(), 0
        while images == 0 or clock() - begin < min_seconds:
            for x in batches:
                run_batch(x)
                images += len(x)
        synchronize()
        out.append((meter.read() - start) / images)
    return out
