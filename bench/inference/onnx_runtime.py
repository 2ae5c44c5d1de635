"""An exported early-exit model run outside PyTorch: its stage graphs (bench.inference.stages)
in ONNX Runtime, with real early exits decided in numpy.

At exit n the images still running get F_n (the stage's ``logits{n}``), a confidence (the
max softmax of F_n, bench.evaluate.max_softmax in float64) and the class
argmax F_n; those whose confidence reaches the exit's threshold leave, the last exit takes
the rest. The others go on: every tensor a later stage reads is kept for their rows only,
so nothing past an image's exit is computed for it (as bench.inference.early_exit does in
PyTorch). Thresholds come from bench.inference.operating_points.

>>> model = bench.export.load("model_onnx/")       # a folder bench export --format onnx wrote
>>> classes, exits, confidences = model.predict(x, budget_mmacs=3.0)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.evaluate import max_softmax
from bench.inference.onnx_export import require
from bench.inference.operating_points import ExportError, OperatingPoints

RUNTIME = "onnxruntime"


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def session_options(threads: int | None):
    """ONNX Runtime options: ``threads`` intra-op threads (None: its default), one
    inter-op thread, nodes run in order."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


class OnnxModel:
    """The stages of an export folder in ONNX Runtime sessions, with the thresholds of its
    manifest (already checked by bench.export). Same interface as the PyTorch export
    (:class:`bench.inference.ExportedModel`): ``predict``, ``thresholds``, ``budgets``,
    ``num_exits``, ``info``, and ``model(x)`` for F_n of every exit."""

    runtime = RUNTIME

    def __init__(self, folder: Path, manifest: dict, threads: int | None = None,
                 providers: list[str] | None = None):
        ort = require("onnxruntime")
        self.folder = Path(folder)
        self.stages = manifest["stages"]
        options = session_options(threads)
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = [ort.InferenceSession(str(self.folder / s["file"]), options,
                                              providers=providers) for s in self.stages]
        self.points = OperatingPoints(manifest, RUNTIME)
        self.info = manifest
        # after stage n, the tensors some later stage still reads
        self._needed = [set().union(*[set(s["inputs"]) for s in self.stages[n + 1:]])
                        for n in range(len(self.stages))]

    @property
    def num_exits(self) -> int:
        return len(self.stages)

    exit_mmacs = property(lambda self: self.points.exit_mmacs)
    curve = property(lambda self: self.points.curve)
    budgets = property(lambda self: self.points.budgets, doc="fixed budgets (MMACs per image)")

    def thresholds(self, budget_mmacs: float | None = None, budget_ms: float | None = None,
                   batch_size: int | None = None) -> list[float]:
        return self.points.thresholds(budget_mmacs, budget_ms, batch_size)

    def _stage(self, n: int, values: dict) -> dict:
        stage = self.stages[n]
        outs = self.sessions[n].run(stage["outputs"], {k: values[k] for k in stage["inputs"]})
        return dict(zip(stage["outputs"], outs))

    def __call__(self, x) -> list[torch.Tensor]:
        """F_n [M, C] of every exit, every image run to the last exit."""
        values, logits = {"x": _numpy(x)}, []
        for n in range(self.num_exits):
            values.update(self._stage(n, values))
            logits.append(torch.from_numpy(values[f"logits{n + 1}"]))
        return logits

    def _run(self, t: np.ndarray, x: np.ndarray):
        m = len(x)
        classes = np.empty(m, dtype=np.int64)
        exits = np.empty(m, dtype=np.int64)
        conf = np.empty(m, dtype=np.float64)
        running = np.arange(m)  # original index of every image still running
        values = {"x": x}
        for n in range(self.num_exits):
            values.update(self._stage(n, values))
            z = values[f"logits{n + 1}"]  # F_n [B, C]
            s = max_softmax(torch.from_numpy(z)[None])[0].numpy()  # float64, [B]
            last = n + 1 == self.num_exits
            leave = np.ones(len(s), dtype=bool) if last else s >= t[n]
            out = running[leave]
            classes[out] = z[leave].argmax(axis=-1)
            exits[out] = n
            conf[out] = s[leave]
            if leave.all():
                break
            stay = ~leave
            running = running[stay]
            values = {k: v[stay] for k, v in values.items() if k in self._needed[n]}
        return classes, exits, conf

    def predict(self, x, budget_mmacs: float | None = None, batch_size: int | None = None,
                budget_ms: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(classes [M] int64, exits [M] int64 0-based, confidences [M] float64) for images
        ``x`` [M, C, H, W] (a tensor or an array, normalized as in training:
        ``info['input']``), exiting early under ``budget_mmacs`` or ``budget_ms`` (the
        latency measured with ONNX Runtime at ``batch_size``); ``batch_size`` splits ``x``
        into batches run one after another (1: image by image)."""
        return self.early_exit(self.thresholds(budget_mmacs, budget_ms, batch_size), x,
                               batch_size)

    def early_exit(self, thresholds, x, batch_size: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`predict` with explicit per-exit ``thresholds`` (N values; the last is not
        used), as bench.inference.early_exit takes them."""
        t = np.asarray([float(v) for v in thresholds], dtype=np.float64)
        if len(t) != self.num_exits:
            raise ValueError(f"thresholds has {len(t)} values for a model with "
                             f"{self.num_exits} exits")
        x = _numpy(x)
        m = len(x)
        size = max(m, 1) if batch_size is None else batch_size
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        parts = [self._run(t, x[i:i + size]) for i in range(0, m, size)]
        if not parts:
            return (torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                    torch.empty(0, dtype=torch.float64))
        return tuple(torch.from_numpy(np.concatenate(p)) for p in zip(*parts))


__all__ = ["ExportError", "OnnxModel", "session_options"]
