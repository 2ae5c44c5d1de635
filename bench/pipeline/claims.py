"""File locks that let several independent workers share one suite (or one study).

A worker *claims* a run by holding an exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` for
the run's whole duration; another worker that finds it held skips the run. The OS drops
the lock when the process exits or dies, so a killed worker's run is taken (and resumed
from its last checkpoint) by the next worker that reaches it. The summary is rebuilt under
a suite-level lock, so concurrent rebuilds do not interleave and the last one sees every
finished run.

Caveat (docs/scaling.md): flock is per host on most network file systems. On NFSv4 Linux
emulates flock with byte-range locks that the server does hold across clients; on NFSv3
without lockd, or on some FUSE/object-store mounts, locks are local only and workers on
different hosts could take the same run. Use one host per results folder there.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from bench.fileio import open_lock


class Claim:
    """An exclusive lock on a file, held until ``release()`` (or process death)."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = Path(path), fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def try_claim(path: Path) -> Claim | None:
    """Take the lock on ``path`` without waiting; None when another process holds it."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return Claim(path, fd)


