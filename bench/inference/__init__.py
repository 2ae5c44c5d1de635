"""Running a network exit by exit: real early exits (a batch shrinks as images leave) and
the same decisions simulated from a full forward (``early_exit``), the exported model whose
``predict`` exits early (``exported``; bench.export reads and writes its file), and timing
(``timing``)."""
from bench.inference.early_exit import early_exit, simulate
from bench.inference.exported import ExportedModel, ExportError
from bench.inference.timing import (CpuTimer, CudaTimer, percentile, summarize,
                                    time_interleaved, timer_for)

__all__ = [
    "CpuTimer",
    "CudaTimer",
    "ExportError",
    "ExportedModel",
    "early_exit",
    "percentile",
    "simulate",
    "summarize",
    "time_interleaved",
    "timer_for",
]
