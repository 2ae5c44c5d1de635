"""The stages of an early-exit network (bench.inference.stages) written as ONNX graphs, one
file per stage, with the batch axis of every input and output dynamic.

The exporter is torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``) by
default: a stage is straight-line code once its exit is fixed (the Python control flow of
``advance`` depends on the exit, never on the images), which tracing captures exactly, and
it exports a stage in a fraction of a second where the torch.export-based exporter
(``exporter="dynamo"``, also supported) took 5-12 s per stage of msdnet_tiny and needs
onnxscript. Both give the same graphs up to float rounding
(tests/inference/test_onnx_export.py). Inputs a stage
does not read (a scale no later block uses) are dropped from its graph; :func:`graph_inputs`
reads back the ones it has.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from bench import fileio
from bench.errors import UsageError
from bench.inference.stages import StagePlan, plan_stages

OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
BATCH = "batch"  # the dynamic axis' name
SAMPLE_BATCH = 2  # images of the sample batch the stages are traced with


class MissingExtra(UsageError):
    """An optional dependency of ONNX export or ONNX Runtime is not installed (the CLI
    says so in one line, exit code 2)."""


def require(module: str):
    """Import ``module`` (onnx, onnxruntime) or say which extra installs it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise MissingExtra(f"{module} is not installed: ONNX export and ONNX Runtime need "
                           f"the deploy extra (pip install -e '.[deploy]', or pip install "
                           f"onnx onnxruntime onnxscript)") from err


def _export(plan: StagePlan, path: Path, opset: int, exporter: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation, tracer notes
        if exporter == "torchscript":
            axes = {name: {0: BATCH} for name in (*plan.inputs, *plan.outputs)}
            torch.onnx.export(plan.module, plan.example, str(path), input_names=list(
                plan.inputs), output_names=list(plan.outputs), opset_version=opset,
                dynamo=False, dynamic_axes=axes, do_constant_folding=True)
        else:
            batch = torch.export.Dim(BATCH, min=1)
            shapes = (tuple({0: batch} for _ in plan.inputs),)  # *inputs: one tuple
            program = torch.onnx.export(plan.module, plan.example, input_names=list(
                plan.inputs), output_names=list(plan.outputs), opset_version=max(opset, 18),
                dynamo=True, dynamic_shapes=shapes, external_data=False)
            program.save(str(path), external_data=False)


def graph_inputs(path: Path) -> list[str]:
    """The input names of the ONNX graph at ``path``, in order (initializers excluded)."""
    onnx = require("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in weights]


def export_stages(network: nn.Module, combine: Callable | None, folder: Path,
                  input_size: Sequence[int], opset: int = OPSET,
                  exporter: str = "torchscript") -> list[dict]:
    """Write ``folder``/stage{n}.onnx for every exit n of ``network`` (eval mode, CPU,
    float32); per stage: ``exit`` (1-based), ``file``, ``sha256``, ``inputs`` (the graph's,
    in order) and ``outputs`` (in order)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    require("onnx")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLE_BATCH, *input_size, generator=generator)
    stages = []
    for plan in plan_stages(network, combine, x):
        path = folder / f"stage{plan.index + 1}.onnx"
        _export(plan, path, opset, exporter)
        stages.append({"exit": plan.index + 1, "file": path.name, "sha256": fileio.sha256_file(path),
                       "inputs": graph_inputs(path), "outputs": list(plan.outputs)})
    return stages
