"""The code fingerprint: which code made a run.

``sha256`` is taken over the sorted relative paths and the full bytes of every .py file
under bench/ and methods/ (plus a suite's plugin files), so it works from a source archive
without git and changes with any edit, even one line appended to methods/joint.py. Where
there is git, the commit and whether the code differs from it are recorded beside it.

A run's id does not include the fingerprint (moving to a new commit must not orphan
results); a finished run whose recorded fingerprint differs from the current code's is
*stale* (bench run keeps it and says so; ``--rerun-stale`` trains it again).
"""
from __future__ import annotations

import hashlib
import importlib.util
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent  # the folder holding bench/ and methods/
PACKAGES = ("bench", "methods")
SHORT = 10  # hex digits shown in messages


def code_files(root: Path = ROOT) -> list[Path]:
    """Every .py file of the harness, sorted by path relative to ``root``."""
    files = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")
             if "__pycache__" not in p.parts]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def plugin_files(plugins: Sequence[str]) -> list[Path]:
    """The source files of a suite's plugins: a plugin file itself; for a module its file,
    or every .py file of a package. Modules that cannot be found add nothing."""
    out = []
    for plugin in plugins:
        if plugin.endswith(".py"):
            out.append(Path(plugin))
            continue
        try:
            spec = importlib.util.find_spec(plugin)
        except (ImportError, ValueError):
            spec = None
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        if origin is None or not origin.exists():
            continue
        out += sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" \
            else [origin]
    return out


def digest(files: Iterable[Path], root: Path = ROOT, extra: Iterable[Path] = ()) -> str:
    """sha256 over (name, bytes) of ``files`` (named relative to ``root``) and then of
    ``extra`` files (named ``plugin:<file name>``: where a plugin lives does not matter)."""
    h = hashlib.sha256()
    entries = [(p.relative_to(root).as_posix(), p) for p in files]
    entries += sorted((f"plugin:{p.name}", p) for p in extra)
    for name, path in entries:
        try:
            data = Path(path).read_bytes()
        except OSError:  # a plugin file that is gone: other code than the one it was
            h.update(name.encode() + b"\0missing\0")
            continue
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def _git(*args: str, root: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(root: Path = ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding the code, or (None, None) without git.
    Dirty: a tracked or untracked change under bench/ or methods/."""
    commit = _git("rev-parse", "HEAD", root=root)
    if not commit or _git("rev-parse", "--show-prefix", root=root) is None:
        return None, None
    status = _git("status", "--porcelain", "--", *PACKAGES, root=root)
    return commit.strip(), None if status is None else bool(status.strip())


def fingerprint(plugins: Sequence[str] = (), root: Path = ROOT, git: bool = True) -> dict:
    """``{"sha256", "short", "files", "git_commit", "git_dirty"}`` of the current code."""
    files = code_files(root)
    extra = plugin_files(plugins)
    sha = digest(files, root, extra)
    commit, dirty = git_state(root) if git else (None, None)
    return {"sha256": sha, "short": sha[:SHORT], "files": len(files) + len(extra),
            "git_commit": commit, "git_dirty": dirty}


def current(plugins: Sequence[str] = ()) -> str:
    """The sha256 of the code as it is now (what runs are compared with to call them
    stale)."""
    return fingerprint(plugins, git=False)["sha256"]


def short(sha: str | None) -> str:
    """How messages show a fingerprint (``unknown`` where a run recorded none)."""
    return sha[:SHORT] if sha else "unknown"
