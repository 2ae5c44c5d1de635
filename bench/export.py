"""What ``bench export`` writes: one deployable early-exit model, loaded without the
harness's results, suites or training code. This module owns both formats: ``save`` and
``save_onnx`` write them (bench.pipeline.packaging puts the content together), ``load``
reads either.

>>> model = bench.export.load("model.pt")          # torch.load(..., weights_only=True)
>>> model = bench.export.load("model_onnx/")       # a folder: stage graphs in ONNX Runtime
>>> classes, exits, confidences = model.predict(x, budget_mmacs=3.0)

``load`` returns a :class:`bench.inference.ExportedModel` (a file) or a
:class:`bench.inference.OnnxModel` (a folder), whose ``predict`` really exits early: every
image leaves at the first exit whose confidence (max softmax of F_n) reaches that exit's
threshold, and nothing past its exit is computed for it.

The folder holds one ONNX graph per exit (``stage{n}.onnx``: the backbone from exit n-1 to
exit n and exit n's head, with the state the next stage needs; bench.inference.stages) and
``manifest.json``: the same plain data as the file (thresholds, costs, latency, input
normalization) without the weights, the stages' input and output names in order and each
stage file's sha256. ``load`` refuses a folder whose manifest or any stage file changed.

The file is plain data and tensors (so ``weights_only=True`` loads it) and carries the
sha256 of its own content (``sha256``): ``load`` refuses a file whose content no longer
matches it (an edit, a broken copy), and refuses thresholds that are not finite numbers,
naming the budget: a NaN threshold passes no comparison and would silently send every
image to the last exit. The file's keys are listed in docs/deploy.md.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench import fileio
from bench.fileio import read_json, save_torch, write_json
from bench.inference.exported import ExportedModel, ExportError
from bench.inference.onnx_export import OPSET, export_stages
from bench.inference.onnx_runtime import OnnxModel

FORMAT = "boostnet-bench export 2"  # 2: with the content's sha256
OLD_FORMATS = ("boostnet-bench export 1",)  # no checksum: export the run again
ONNX_FORMAT = "boostnet-bench onnx export 1"
MANIFEST = "manifest.json"
CHECKSUM = "sha256"
FORMATS = ("pt", "onnx")  # bench export --format
REQUIRED = ("format", "state_dict", "backbone", "num_classes", "method", "exit_mmacs",
            "budgets", "curve", CHECKSUM)
ONNX_REQUIRED = ("format", "opset", "stages", "input", "num_classes", "exit_mmacs",
                 "budgets", "curve", CHECKSUM)

__all__ = ["CHECKSUM", "FORMAT", "FORMATS", "MANIFEST", "ONNX_FORMAT", "REQUIRED",
           "ExportError", "ExportedModel", "OnnxModel", "check", "check_manifest",
           "content_sha256", "load", "save", "save_onnx"]


def content_sha256(payload: dict) -> str:
    """sha256 of everything in ``payload`` but its ``sha256``: every tensor of the state
    dict by name, dtype, shape and raw bytes, then the other keys as canonical JSON (sorted
    keys; NaN and infinities written as such, so they change the sum too)."""
    h = hashlib.sha256()
    for name, tensor in sorted(payload.get("state_dict", {}).items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    rest = {k: v for k, v in payload.items() if k not in ("state_dict", CHECKSUM)}
    h.update(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def _check_thresholds(payload: dict, path) -> None:
    """Every threshold a finite number; an ExportError names the budget or curve point."""
    places = [(f"budget {b.get('budget_mmacs')} MMACs", b) for b in payload["budgets"]]
    places += [(f"budget {b.get('budget_ms')} ms", b) for b in payload.get("budgets_ms") or []]
    places += [(f"the q curve's point q={c.get('q')}", c) for c in payload["curve"]]
    for where, entry in places:
        for n, t in enumerate(entry.get("thresholds") or []):
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
                raise ExportError(f"{path}: {where}: the threshold of exit {n + 1} is {t!r}; "
                                  "thresholds must be finite numbers (+inf and -inf are "
                                  "written as numbers just outside the scores' range)")


def check(payload: Any, path: str | Path = "<export>") -> dict:
    """``payload`` if it is an intact export of this harness; an ExportError naming the
    file and what is not."""
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found in OLD_FORMATS:
        raise ExportError(f"{path}: written by an older bench export ({found!r}) without a "
                          "checksum; export the run again with bench export")
    _check_stamped(payload, path, FORMAT, REQUIRED,
                   ("a model exported by bench export", "the export", "the file"))
    _check_thresholds(payload, path)
    return payload


def _check_stamped(content: Any, path: Path, fmt: str, required: tuple, names: tuple) -> None:
    """An ExportError naming ``path`` unless ``content`` is a dict of format ``fmt`` with
    the ``required`` keys whose sha256 matches its content. ``names``: what the content is,
    what it is called in the key message, and in the checksum message."""
    what, called, changed = names
    found = content.get("format") if isinstance(content, dict) else type(content).__name__
    if not isinstance(content, dict) or found != fmt:
        raise ExportError(f"{path}: not {what} (format {fmt!r} expected, found {found!r})")
    missing = [k for k in required if k not in content]
    if missing:
        raise ExportError(f"{path}: {called} lacks key(s) {', '.join(missing)}")
    if content[CHECKSUM] != content_sha256(content):
        raise ExportError(f"{path}: the content does not match its sha256 ({changed} was "
                          "changed or damaged after bench export wrote it); export the run "
                          "again")


def save(path: str | Path, content: dict) -> Path:
    """Write ``content`` (docs/deploy.md's keys but ``format`` and ``sha256``) as an export
    at ``path``, stamped with the format and the content's sha256. Non-finite thresholds
    are refused (ExportError naming the budget) before anything is written."""
    path = Path(path)
    payload = {"format": FORMAT, **content}
    _check_thresholds(payload, path)
    payload[CHECKSUM] = content_sha256(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch(path, payload)
    return path


def check_manifest(manifest: Any, folder: Path) -> dict:
    """``manifest`` if the folder is an intact ONNX export: format, keys, the manifest's
    sha256, every stage file present with the sha256 the manifest gives; an ExportError
    naming the file otherwise."""
    path = folder / MANIFEST
    _check_stamped(manifest, path, ONNX_FORMAT, ONNX_REQUIRED,
                   ("a manifest of bench export --format onnx", "the manifest", "the manifest"))
    for stage in manifest["stages"]:
        file = folder / stage["file"]
        if not file.is_file():
            raise ExportError(f"{file}: stage file of exit {stage.get('exit')} is missing; "
                              "export the run again")
        if fileio.sha256_file(file) != stage["sha256"]:
            raise ExportError(f"{file}: stage file of exit {stage.get('exit')} does not match "
                              "its sha256 in manifest.json (changed or damaged after bench "
                              "export wrote it); export the run again")
    _check_thresholds(manifest, path)
    return manifest


def save_onnx(folder: str | Path, content: dict, network: nn.Module,
              combine: Callable | None, opset: int = OPSET, exporter: str = "torchscript"
              ) -> Path:
    """Write ``content`` (docs/deploy.md's keys; its ``state_dict`` is left out: the weights
    are in the graphs) as an ONNX export folder: the stage graphs of ``network`` (eval
    mode, CPU) and the method's ``combine``, and manifest.json with the stages, the opset
    and its sha256. The folder is built beside ``folder`` and put in its place at the end;
    an existing ``folder`` is replaced only if it is an export (a manifest.json in it)."""
    folder = Path(folder)
    payload = {"format": ONNX_FORMAT, **{k: v for k, v in content.items()
                                         if k != "state_dict"}}
    _check_thresholds(payload, folder / MANIFEST)
    if folder.exists() and not (folder / MANIFEST).is_file() and any(folder.iterdir()):
        raise ExportError(f"{folder}: exists and holds no manifest.json (not an ONNX export); "
                          "give an empty or new folder to --out")
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(building, 0o777 & ~fileio.umask())  # mkdtemp's 0700, as any other folder
    try:
        stages = export_stages(network, combine, building, payload["input"]["size"], opset,
                               exporter)
        payload.update(opset=opset, exporter=exporter, stages=stages)
        payload[CHECKSUM] = content_sha256(payload)
        write_json(building / MANIFEST, payload)
        if folder.exists():
            shutil.rmtree(folder)
        building.rename(folder)
    finally:
        if building.exists():
            shutil.rmtree(building)
    return folder


def load(path: str | Path, map_location: str | torch.device = "cpu",
         threads: int | None = None) -> ExportedModel | OnnxModel:
    """The model ``bench export`` wrote: a file is loaded with ``weights_only=True`` (no
    pickled code runs) as an ExportedModel in eval mode; a folder (``--format onnx``) as an
    OnnxModel whose stages run in ONNX Runtime (``threads``: its intra-op threads). Both
    are checked first (format, keys, sha256, finite thresholds)."""
    path = Path(path)
    if path.is_dir():
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise ExportError(f"{path}: a folder without manifest.json is not an export of "
                              "bench export --format onnx")
        try:
            manifest = read_json(manifest_path)
        except ValueError as err:
            raise ExportError(f"{manifest_path}: not readable JSON ({err})") from err
        return OnnxModel(path, check_manifest(manifest, path), threads=threads)
    payload = torch.load(path, map_location=map_location, weights_only=True)
    return ExportedModel(check(payload, path))
