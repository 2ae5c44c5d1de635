"""What several commands share: which runs ``--only`` selects, where a SUITE argument's
results are, rendering the report, and SIGTERM taken as Ctrl-C."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from pathlib import Path

from bench import report, store
from bench.config import RunSpec, Suite, select
from bench.config.loading import read_name, slugify
from bench.errors import UsageError
from bench.fileio import CannotWrite, LinkRefused

FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def selected_runs(suite: Suite, pattern: str | None) -> list[RunSpec]:
    runs = select(suite.runs, pattern) if pattern else list(suite.runs)
    if not runs:
        raise UsageError(f"--only {pattern!r} matches no run of {suite.path}; run ids: "
                         + ", ".join(r.run_id for r in suite.runs))
    return runs


def not_a_file(path: Path, option: str) -> Path:
    """``path`` unless it exists and is no folder (a UsageError naming ``option``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: not a folder")
    return path


def folder_option(path: Path, option: str, create: bool) -> Path:
    """A ``--results`` / ``--reports`` folder: an existing folder, or (``create``) one made
    now; a file, a folder that cannot be made or written is a UsageError naming the
    option."""
    path = not_a_file(path, option)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(f"{option} {path}: cannot create the folder "
                             f"({err.strerror or err})") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path}: the folder is not writable")
    elif not path.is_dir():
        raise UsageError(f"{option} {path}: no such folder")
    return path


def suite_folder(arg: str, results: Path) -> store.Suite:
    """A SUITE argument: a suite file anywhere (only its ``name`` is read: nothing is built
    or validated) or the name of a folder inside the results root (never a path out of
    it)."""
    path = Path(arg)
    if path.suffix in {".yaml", ".yml"} or path.is_file():
        name = read_name(path)
        folder = store.Suite(results / slugify(name))
        folder.check_owner(name)  # a folder of another suite whose name gives one slug
        return folder
    if not FOLDER_NAME.fullmatch(arg):
        raise UsageError(f"{arg!r} is neither a suite file nor a suite folder name (letters, "
                         f"digits, _ . -) inside {results}/")
    if not (results / arg).is_dir():
        known = [p.name for p in store.list_suites(results)]
        raise UsageError(f"no results for suite {arg!r} in {results}/; suites with results: "
                         f"{', '.join(known) or 'none'}")
    return store.Suite(results / arg)


def render(results: Path, reports: Path, suites: list[str] | None) -> None:
    """Render the report of ``suites`` (folder names; all when None) and say where."""
    try:
        index = report.render(results, reports, suites)
    except ImportError as err:  # the report's packages (plotly, jinja2) are missing
        print(f"report not rendered: {err}", file=sys.stderr)
        return
    print(f"report: {index}", file=sys.stderr)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt(enabled: bool = True):
    """Inside the block, SIGTERM (``kill``, a scheduler or container stopping the job)
    raises KeyboardInterrupt as Ctrl-C does: the run in progress is recorded as
    interrupted, claims are released and the command ends with its one line and exit
    code 130 (bench.cli). Nothing changes when not ``enabled`` (under torchrun, which
    ends its ranks with SIGTERM, one of them perhaps inside a collective where it could
    not take the signal) nor outside the main thread (which alone takes signals)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def os_error(err: OSError) -> str:
    """One line for an operating-system error: the harness's own (a failed write, a
    refused link) say what and where; others name their file."""
    if isinstance(err, (CannotWrite, LinkRefused)):
        return str(err)
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"
