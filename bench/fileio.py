"""Atomic file writes and the readers of what they write, for anything the harness keeps on disk.

Every write goes to a temporary file ``.<name>.<random>.tmp`` in the target's folder, is
flushed to disk, renamed over the target (``os.replace``) and the folder is flushed too, so
a reader never sees half a file, a killed writer leaves the previous version, and the new
name survives a power cut. Files get the permissions of any file the user creates
(``0o666`` less the umask), so workers running as other users of a group can read them. The
results store (bench.store) and the per-exit cost cache (bench.flops) both write through
here.
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch

TMP_SUFFIX = ".tmp"


class UnreadableFile(ValueError):
    """A file that exists but cannot be read as what it should be (truncated, not JSON, a
    torch file that does not load with ``weights_only=True``, ...)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (changing it, even
    for an instant, would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file) to disk; a no-op where the file
    system cannot (some network and FUSE mounts refuse to fsync a directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def is_temporary(name: str, target: str | None = None) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_write` (of ``target`` only, if
    given): what a killed writer leaves behind."""
    stem = re.escape(target) if target else r".+"
    return re.fullmatch(rf"\.{stem}\.[^.]+{re.escape(TMP_SUFFIX)}", name) is not None


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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
    so it loads with ``weights_only=True`` (no pickled code runs). A missing file raises
    FileNotFoundError; one that does not load raises :class:`UnreadableFile`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises many kinds on a truncated or foreign file
        raise UnreadableFile(path, _torch_reason(err)) from err


def _torch_reason(err: Exception) -> str:
    """The first sentence of torch's message (its advice runs for lines)."""
    first = (str(err).strip().splitlines() or [""])[0].split(". ")[0]
    return f"not a readable torch file: {type(err).__name__}: {first[:160]}"
