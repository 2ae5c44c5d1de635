"""Peak memory of a block of training work (the trainer's ``peak_memory_mib``)."""
from __future__ import annotations

import threading

import psutil
import torch


def rss_bytes() -> int:
    """This process's resident set size (psutil: any OS it supports)."""
    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak memory of a block of work, in MiB (``peak_mib``; None where not measurable).

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak at the start (all
    tensors on the device, the model and optimizer state included). CPU: the peak of the
    process's resident set size, sampled every 10 ms by a background thread, above
    ``baseline`` (bytes; the trainer passes the RSS when training started in this process).
    An approximation: a peak shorter than the interval is missed; the first run in a
    process also counts the libraries' one-time allocations; and memory that earlier work
    in the process freed but the C allocator kept (it rarely hands freed memory back to the
    system) is reused without showing, so a run after others in one process, or an epoch
    after the first, can read lower than a first run's first epoch.
    """

    INTERVAL_S = 0.01
    CPU_MEASURE = ("cpu peak RSS above the RSS when training started in the process, "
                   "sampled every 10 ms (psutil)")

    def __init__(self, device: torch.device, baseline: int | None = None):
        self.device, self.baseline, self.peak_mib = device, baseline, None
        self.measure = ("cuda max_memory_allocated" if device.type == "cuda"
                        else self.CPU_MEASURE)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._peak = rss_bytes()
        if self.baseline is None:
            self.baseline = self._peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self._peak = max(self._peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, rss_bytes())
        self.peak_mib = max(0, self._peak - self.baseline) / 2 ** 20
