"""Atomic file writes and the one JSON reader, for anything the harness keeps on disk.

Every write goes to a temporary file in the target's folder, is flushed to disk, then
renamed over the target (``os.replace``), so a reader never sees half a file and a killed
writer leaves the previous version. The results store (bench.store) and the per-exit cost
cache (bench.flops) both write through here.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: Path, obj: Any) -> None:
    """Indented JSON; NaN and infinities are written as JSON's NaN/Infinity extensions."""
    write_text(path, json.dumps(obj, indent=1, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    """The parsed file; raises OSError or ValueError (json.JSONDecodeError) as they come."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path: Path) -> Any:
    """A file written by :func:`save_torch`: tensors, numbers, strings, lists and dicts only,
    so it loads with ``weights_only=True`` (no pickled code runs)."""
    return torch.load(path, map_location="cpu", weights_only=True)
