"""The file ``bench export`` writes: one deployable early-exit model, loaded without the
harness's results, suites or training code. This module owns the file's format: ``save``
writes it (bench.pipeline.packaging puts the content together), ``load`` reads it.

>>> model = bench.export.load("model.pt")          # torch.load(..., weights_only=True)
>>> classes, exits, confidences = model.predict(x, budget_mmacs=3.0)

``load`` returns a :class:`bench.inference.ExportedModel`, whose ``predict`` really exits
early: every image leaves at the first exit whose confidence (max softmax of F_n) reaches
that exit's threshold, and nothing past its exit is computed for it.

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
from pathlib import Path
from typing import Any

import torch

from bench.fileio import save_torch
from bench.inference.exported import ExportedModel, ExportError

FORMAT = "boostnet-bench export 2"  # 2: with the content's sha256
OLD_FORMATS = ("boostnet-bench export 1",)  # no checksum: export the run again
CHECKSUM = "sha256"
REQUIRED = ("format", "state_dict", "backbone", "num_classes", "method", "exit_mmacs",
            "budgets", "curve", CHECKSUM)

__all__ = ["CHECKSUM", "FORMAT", "REQUIRED", "ExportError", "ExportedModel", "check",
           "content_sha256", "load", "save"]


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
    if not isinstance(payload, dict) or found != FORMAT:
        raise ExportError(f"{path}: not a model exported by bench export (format "
                          f"{FORMAT!r} expected, found {found!r})")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise ExportError(f"{path}: the export lacks key(s) {', '.join(missing)}")
    if payload[CHECKSUM] != content_sha256(payload):
        raise ExportError(f"{path}: the content does not match its sha256 (the file was "
                          "changed or damaged after bench export wrote it); export the run "
                          "again")
    _check_thresholds(payload, path)
    return payload


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


def load(path: str | Path, map_location: str | torch.device = "cpu") -> ExportedModel:
    """The model in the file ``bench export`` wrote, loaded with ``weights_only=True`` (no
    pickled code runs), checked (format, keys, sha256, finite thresholds), in eval mode."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    return ExportedModel(check(payload, path))
