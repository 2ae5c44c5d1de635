"""Running a network exit by exit: real early exits (a batch shrinks as images leave) and
the same decisions simulated from a full forward (``early_exit``), the exported model whose
``predict`` exits early (``exported``; bench.export reads and writes its file), the network
cut into one graph per exit (``stages``), written as ONNX (``onnx_export``) and run in ONNX
Runtime with real early exits (``onnx_runtime``), the thresholds that serve a budget in
MMACs or ms (``operating_points``), timing (``timing``) and GPU energy (``energy``)."""
from bench.inference.early_exit import early_exit, simulate
from bench.inference.exported import ExportedModel, ExportError
from bench.inference.onnx_export import MissingExtra, export_stages, require
from bench.inference.onnx_runtime import OnnxModel
from bench.inference.operating_points import OperatingPoints
from bench.inference.timing import (CpuTimer, CudaTimer, percentile, summarize,
                                    time_interleaved, timer_for)

__all__ = [
    "CpuTimer",
    "CudaTimer",
    "ExportError",
    "ExportedModel",
    "MissingExtra",
    "OnnxModel",
    "OperatingPoints",
    "early_exit",
    "export_stages",
    "percentile",
    "require",
    "simulate",
    "summarize",
    "time_interleaved",
    "timer_for",
]
