"""Atomic file writes and the readers of what they write, for anything the harness keeps on disk.

Every write goes to a temporary file ``.<name>.<random>.tmp`` in the target's folder, is
flushed to disk, renamed over the target (``os.replace``) and the folder is flushed too, so
a reader never sees half a file, a killed writer leaves the previous version, and the new
name survives a power cut. The rename replaces a symbolic link at the target's name by the
new file: a write never goes through a link to somewhere else. Files get the permissions of
any file the user creates (``0o666`` less the umask), so workers running as other users of a
group can read them. The results store (bench.store), the report (bench.report) and the
per-exit cost cache (bench.flops) all write through here.

A write that fails for want of room, a quota or permission raises :class:`CannotWrite`,
which names the destination (never the temporary file or the source of a copy), and leaves
no partial file. Folders that must not be symbolic links (a run's, a suite's, a report's)
are checked with :func:`refuse_links`.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch

TMP_SUFFIX = ".tmp"


class CannotWrite(OSError):
    """Writing ``filename`` failed (a full disk, a quota, a read-only file system, no
    permission): ``no space left on device while writing PATH``."""

    def __str__(self) -> str:
        why = (self.strerror or "error").strip().rstrip(".")
        return f"{why[:1].lower()}{why[1:]} while writing {self.filename}"


class LinkRefused(OSError):
    """A folder the harness writes into is a symbolic link (it never makes one): writing
    through it would write outside the results or reports folder."""

    def __init__(self, path: Path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        super().__init__(errno.ELOOP, "a symbolic link", str(path))
        self.target = target

    def __str__(self) -> str:
        return (f"{self.filename} is a symbolic link (to {self.target}): refusing to write "
                "through it; replace it by a folder")


def refuse_links(path: Path, root: Path) -> Path:
    """``path`` after checking that neither it nor any folder between ``root`` (itself
    not checked: a results root may well be a link) and it is a symbolic link
    (:class:`LinkRefused`). ``path`` must lie inside ``root``."""
    path, root = Path(path), Path(root)
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise LinkRefused(current)
    return path


def make_folders(path: Path, root: Path) -> Path:
    """Create ``path`` and the folders between ``root`` and it, none a symbolic link."""
    refuse_links(path, root)
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


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


def open_lock(path: Path) -> int:
    """The lock file ``path``, created (``0o666`` less the umask: workers of one group share
    it) and never through a symlink; another user's lock file that we may not write is
    opened read-only, which flock accepts as well."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY | nofollow)


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block, waiting for it:
    writers of one folder take turns, and whoever holds it knows that any temporary file
    there is a killed writer's."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def temporary_files(folder: Path, targets: tuple[str, ...] | None = None) -> list[Path]:
    """The temporary files of :func:`atomic_write` in ``folder`` (of writes of ``targets``
    only, if given): a killed writer's leftovers, or a write in progress."""
    if not Path(folder).is_dir():
        return []
    return [e for e in sorted(Path(folder).iterdir()) if e.is_file() and not e.is_symlink()
            and any(is_temporary(e.name, t) for t in (targets or (None,)))]


def remove_temporary(folder: Path, targets: tuple[str, ...] | None = None) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` in ``folder`` (of ``targets``
    only, if given); call it holding the :func:`locked` lock under which the folder is
    written: they are killed writers'."""
    removed = temporary_files(folder, targets)
    for entry in removed:
        entry.unlink(missing_ok=True)
    return removed


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``
    (over the link, if ``path`` is a symbolic link). An operating-system error of the write
    (also one that ``write`` reports as another exception, as torch.save does for a full
    disk) raises :class:`CannotWrite` naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                   suffix=TMP_SUFFIX)
    except OSError as err:
        raise _cannot_write(err, path) from err
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_error(err) if isinstance(err, Exception) else None
        if cause is None or isinstance(err, CannotWrite):
            raise
        raise _cannot_write(cause, path) from err
    fsync_dir(path.parent)


def _os_error(err: BaseException) -> OSError | None:
    """The OSError that ``err`` is or was raised while handling (torch.save wraps a failed
    write in a RuntimeError: "unexpected pos ...")."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _cannot_write(err: OSError, path: Path) -> OSError:
    if isinstance(err, (CannotWrite, LinkRefused)):
        return err
    return CannotWrite(err.errno or errno.EIO, err.strerror or str(err), str(path))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def copy_file(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` atomically (a failed read names ``source``, a failed
    write ``path``)."""
    data = Path(source).read_bytes()
    atomic_write(path, lambda f: f.write(data))


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


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
