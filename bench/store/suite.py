"""One suite folder, ``results/<suite slug>/``: suite.json, summary.csv, the run folders and
the tuning studies' best-trial files.

Like :class:`bench.store.run.Run`, reading is tolerant and writing atomic. A suite in
progress, a failed run or a half-written folder reads fine: every file is optional, and a
file that exists but cannot be read is named in one line and left out.

Which runs count: the folder keeps every run it ever held, but the views (tables, tests,
status) use the suite's *current* runs alone (:attr:`Suite.runs`): those whose ids the last
``bench run`` wrote into suite.json (``run_ids``: the runs the suite's settings expand to),
plus the newest import (``bench evaluate``) of each of them. The other run folders (runs of
other settings, e.g. another ``--set training.epochs``, and earlier imports) stay on disk
and are listed apart (:attr:`Suite.other_runs`); they are never pooled with the current
ones. ``Suite(path, run_ids)`` chooses the runs on purpose.

Neither the suite folder nor a run folder may be a symbolic link (bench.fileio.LinkRefused):
the harness makes neither, and writing through one would write outside the results root.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from bench.errors import UsageError
from bench import fileio
from bench.fileio import refuse_links, write_json, write_text
from bench.store import files as F
from bench.store import schema as S
from bench.store.run import Run

OTHER_SETTINGS = "other settings"
EARLIER_IMPORT = "earlier import"


class SuiteFolderTaken(UsageError):
    """suite.json names another suite: two suite names that give one folder name."""


class Suite:
    """``run_ids``: the runs the views use (default: suite.json's ``run_ids``)."""

    def __init__(self, path: Path, run_ids: list[str] | None = None):
        self.path = Path(path)
        self.slug = self.path.name
        self._run_ids = None if run_ids is None else list(run_ids)

    def __repr__(self) -> str:
        return f"Suite({str(self.path)!r})"

    @property
    def folder(self) -> Path:
        """The suite folder, checked: not a symbolic link (bench.fileio.LinkRefused)."""
        return refuse_links(self.path, self.path.parent)

    def file(self, name: str) -> Path:
        return self.folder / name

    def run(self, run_id: str) -> Run:
        return Run(self.path / run_id, root=self.path.parent)

    def select(self, run_ids: list[str]) -> "Suite":
        """The same folder with the views on ``run_ids`` (and their newest imports)."""
        return Suite(self.path, run_ids)

    # -- reading ------------------------------------------------------------------------
    @cached_property
    def folders(self) -> list[Run]:
        """Every run folder (holding a config.json or a status.json), current or not; a
        run folder that is a symbolic link is left out (said in one line)."""
        out = []
        for p in _entries(self.folder):
            if p.is_symlink():
                F.log.warning("%s is a symbolic link; left out (run folders are never links)",
                              p)
            elif F.is_entry_dir(p) and any((p / f).exists() for f in (F.CONFIG, F.STATUS)):
                out.append(Run(p, root=self.path.parent))
        return out

    @property
    def run_ids(self) -> list[str] | None:
        """The ids of the suite's current runs: given, or suite.json's ``run_ids``; None
        where neither says (a store written before run ids were recorded: every run
        folder counts)."""
        if self._run_ids is not None:
            return self._run_ids
        ids = self.config.get("run_ids")
        return list(ids) if isinstance(ids, list) else None

    @cached_property
    def runs(self) -> list[Run]:
        """The current runs: run folders of :attr:`run_ids` and the newest import of each
        (bench evaluate), in folder order."""
        ids = self.run_ids
        if ids is None:
            return list(self.folders)
        wanted = set(ids)
        newest: dict[str, Run] = {}
        for r in self.folders:
            replaces = (r.imported or {}).get("replaces_run")
            if replaces in wanted and (replaces not in newest
                                       or _import_key(r) > _import_key(newest[replaces])):
                newest[replaces] = r
        chosen = {id(r) for r in newest.values()}
        return [r for r in self.folders if _run_id(r) in wanted or id(r) in chosen]

    @property
    def other_runs(self) -> list[Run]:
        """Run folders that are not current: other settings, or earlier imports."""
        current = {id(r) for r in self.runs}
        return [r for r in self.folders if id(r) not in current]

    def why_other(self, run: Run) -> str:
        """Why a run of :attr:`other_runs` is not in the tables (OTHER_SETTINGS or
        EARLIER_IMPORT)."""
        replaces = (run.imported or {}).get("replaces_run")
        return EARLIER_IMPORT if replaces in set(self.run_ids or ()) else OTHER_SETTINGS

    def others_text(self) -> str:
        """``other settings: 1 run; earlier imports: 5 runs`` (empty without such runs)."""
        reasons = [self.why_other(r) for r in self.other_runs]
        parts = []
        for why, title in ((OTHER_SETTINGS, "other settings"),
                           (EARLIER_IMPORT, "earlier imports")):
            n = reasons.count(why)
            if n:
                parts.append(f"{title}: {n} run{'' if n == 1 else 's'}")
        return "; ".join(parts)

    @cached_property
    def config(self) -> dict:
        """suite.json: the resolved suite, plus ``run_count`` and ``run_ids``."""
        return F.read_json_or(self.file(F.SUITE), {}, "the suite's settings read as empty",
                              S.SUITE)

    def has_suite_json(self) -> bool:
        return self.file(F.SUITE).exists()

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.slug)

    @property
    def total(self) -> int:
        """Runs the suite expands to (suite.json's run_count, or the chosen run ids), at
        least the current run folders."""
        count = self.config.get("run_count") if self._run_ids is None else len(self._run_ids)
        count = count if isinstance(count, int) and not isinstance(count, bool) else 0
        return max(count, len(self.runs))

    @property
    def plugins(self) -> list[str]:
        """The suite's plugins (suite.json), whose files are part of its code fingerprint."""
        return list(self.config.get("plugins") or [])

    def stale_runs(self, current: str) -> list[Run]:
        """Finished runs made by code other than ``current`` (a code fingerprint)."""
        return [r for r in self.runs if r.is_stale(current)]

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.runs)

    @property
    def state(self) -> str:
        """A one-word status for the suite: done, failed, running (a run says it is),
        interrupted (a run was stopped, none is running), partial (some runs done, the others
        not started and none running: e.g. after ``bench run --only``), pending or empty."""
        if not self.runs and not self.total:
            return "empty"
        if self.count("failed"):
            return "failed"
        if self.count("done") == self.total:
            return "done"
        for state in ("running", "interrupted"):
            if self.count(state):
                return state
        return "partial" if self.count("done") else "pending"

    @property
    def unfinished(self) -> int:
        """Runs neither done nor failed (running, interrupted, pending or without a folder)."""
        return self.total - self.count("done") - self.count("failed")

    @property
    def status_text(self) -> str:
        """``2/2 runs done, 1 failed`` (the current runs); ``2/4 runs done, 1 interrupted,
        none running`` where runs are unfinished and none says it is running; then
        ``; other settings: 1 run`` where the folder holds runs that are not in the tables."""
        parts = [f"{self.count('done')}/{self.total} runs done"]
        for state in ("failed", "interrupted", "running"):
            if self.count(state):
                parts.append(f"{self.count(state)} {state}")
        if self.unfinished and not self.count("running"):
            parts.append("none running")
        others = self.others_text()
        return ", ".join(parts) + (f"; {others}" if others else "")

    @property
    def date(self) -> str | None:
        """The newest time any run reports (status updated, or environment date)."""
        stamps = [str(r.status.get("updated") or r.environment.get("date") or "")
                  for r in self.runs]
        stamps = [s for s in stamps if s]
        return max(stamps) if stamps else None

    @property
    def backbones(self) -> list[str]:
        return _unique(r.backbone for r in self.runs)

    @property
    def methods(self) -> list[str]:
        return _unique(r.method for r in self.runs)

    def runs_of(self, backbone: str | None = None, method: str | None = None,
                state: str | None = None) -> list[Run]:
        return [r for r in self.runs
                if (backbone is None or r.backbone == backbone)
                and (method is None or r.method == method)
                and (state is None or r.state == state)]

    @property
    def method_entries(self) -> list[dict]:
        """suite.json's resolved method entries ({name, label, options, reference, paper})."""
        return [m for m in self.config.get("methods") or [] if isinstance(m, dict)]

    @property
    def baseline(self) -> str | None:
        """The method label the suite compares every other one with (suite.json)."""
        return self.config.get("baseline")

    @property
    def method_labels(self) -> list[str]:
        """Method labels in the suite's order, the baseline first; then labels that only
        run folders know (runs of an earlier version of the suite)."""
        labels = [m.get("label") for m in self.method_entries] + self.methods
        labels = ([self.baseline] if self.baseline else []) + labels
        return _unique(label for label in labels if label)

    def method_name(self, label: str) -> str:
        """The registry name of a method label."""
        for m in self.method_entries:
            if m.get("label") == label:
                return str(m.get("name"))
        return next((r.method_name for r in self.runs if r.method == label), label)

    def regime_of(self, label: str) -> str:
        """The training regime of a method label's runs (config.json's training.regime;
        joint for runs made before regimes existed, methods.regimes)."""
        for r in self.runs_of(method=label):
            training = r.config.get("training")
            if isinstance(training, dict) and isinstance(training.get("regime"), str):
                return training["regime"]
        return "joint"

    def reference_labels(self) -> dict[str, str]:
        """Method name -> the label of its reference variant (the entry whose options are
        the method's defaults, suite.json's ``reference``), for methods that have one."""
        out: dict[str, str] = {}
        for m in self.method_entries:
            if m.get("reference") and m.get("name") not in out:
                out[m["name"]] = m["label"]
        return out

    def paper_labels(self) -> dict[str, str]:
        """The paper's curve name -> the method label that stands for it (suite.json)."""
        return {m["paper"]: m["label"] for m in self.method_entries if m.get("paper")}

    @cached_property
    def rows(self) -> pd.DataFrame:
        """Per-run rows of summary.csv (kind exit or budget) of finished runs, plus the
        method's name (``method_name``).

        Built from each run's metrics.json, the source of truth; summary.csv is the fallback
        for rows of runs that have no folder here (a summary shared without the run
        folders). A run folder whose metrics are missing or unreadable gives no rows: its
        old summary rows may be stale.
        """
        rows = [{**row, "method_name": r.method_name} for r in self.runs if r.metrics
                for row in r.summary_rows(self.slug)]
        df = pd.DataFrame(rows)
        folders = {_run_id(r) for r in self.folders} | {r.path.name for r in self.folders}
        summary = F.read_csv_or_none(self.file(F.SUMMARY), tuple(F.SUMMARY_COLUMNS),
                                     S.SUMMARY_NUMERIC)
        if summary is not None and len(summary):
            ids = summary["run_id"].astype(str)
            keep = ~ids.isin(folders)
            if self.run_ids is not None:  # rows of the current runs alone
                keep &= ids.isin(set(self.run_ids))
            extra = summary[keep].copy()
            if len(extra):
                extra["method_name"] = extra.get("method")
                df = pd.concat([df, extra], ignore_index=True) if len(df) else extra
        if not len(df):
            return pd.DataFrame(columns=F.SUMMARY_COLUMNS + ["method_name"])
        df = df[df["kind"].isin(["exit", "budget"])]
        if "status" in df:
            df = df[df["status"].fillna("done").astype(str) == "done"]
        for col in ("exit", "budget_mmacs", "mmacs", "top1", "top5", "seed"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        return df.reset_index(drop=True)

    @cached_property
    def rule_rows(self) -> pd.DataFrame:
        """Every finished run's exit-rule results (Run.rule_rows, columns F.RULE_COLUMNS),
        read from metrics.json: runs whose metrics predate exit rules give the default rule."""
        rows = [row for r in self.runs if r.state == "done" for row in r.rule_rows()]
        df = pd.DataFrame(rows, columns=F.RULE_COLUMNS)
        for col in ("point", "mmacs", "top1", "seed"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        return df

    # -- writing ------------------------------------------------------------------------
    def tidy(self) -> tuple[list[Path], list[tuple[str, str, Path]]]:
        """Hold :attr:`summary_lock_path`: delete temporary files of killed writes of
        suite.json and summary.csv and set an unreadable one aside
        (``<name>.corrupt-<time>``). Returns (deleted, [(name, why, where it went)])."""
        removed = fileio.remove_temporary(self.folder, (F.SUITE, F.SUMMARY))
        moved = []
        _, problem = F.json_problem(self.file(F.SUITE), S.SUITE)
        if problem:
            moved.append((F.SUITE, problem, F.set_aside(self.file(F.SUITE))))
        _, problem = F.csv_problem(self.file(F.SUMMARY), tuple(F.SUMMARY_COLUMNS),
                                   S.SUMMARY_NUMERIC)
        if problem:
            moved.append((F.SUMMARY, problem, F.set_aside(self.file(F.SUMMARY))))
        self.__dict__.pop("config", None)
        return removed, moved

    def write_suite(self, config: dict, run_ids: list[str]) -> None:
        """suite.json: the resolved suite (every default filled, overrides applied) with
        the number of runs it expands to and their ids (which become the current runs).
        A suite.json of a suite with another name is not overwritten: SuiteFolderTaken
        (two names that give one folder name)."""
        self.check_owner(config.get("name"))
        content = {**config, "run_count": len(run_ids), "run_ids": list(run_ids)}
        write_json(self.file(F.SUITE), content)
        self.__dict__["config"] = content
        for key in ("runs", "rows", "rule_rows"):
            self.__dict__.pop(key, None)

    def check_owner(self, name: str | None) -> None:
        """Raise SuiteFolderTaken when suite.json names a suite other than ``name``."""
        self.__dict__.pop("config", None)
        held = self.config.get("name")
        if name is not None and held is not None and held != name:
            raise SuiteFolderTaken(
                f"{self.path}: the folder of suite {name!r} holds the results of suite "
                f"{held!r} (both names give the folder name {self.slug!r}); rename one "
                "of the suites")

    def write_summary(self) -> Path:
        """Rebuild summary.csv from every run folder, current or not (hold
        :attr:`summary_lock_path` while other workers may write too)."""
        for key in ("folders", "runs"):
            self.__dict__.pop(key, None)
        rows = [row for r in self.folders if r.file(F.CONFIG).exists()
                for row in r.refresh().summary_rows(self.name)]
        frame = pd.DataFrame(rows, columns=F.SUMMARY_COLUMNS)
        path = self.file(F.SUMMARY)
        write_text(path, frame.to_csv(index=False))
        return path

    @property
    def summary_lock_path(self) -> Path:
        return self.file(F.SUMMARY_LOCK)

    # -- tuning -------------------------------------------------------------------------
    @property
    def tuning_dir(self) -> Path:
        return refuse_links(self.path / F.TUNING, self.path.parent)

    @property
    def optuna_db(self) -> Path:
        return self.tuning_dir / F.OPTUNA_DB

    def default_storage(self) -> str:
        """The Optuna storage URL of the suite's studies when none is given: SQLite in
        the tuning folder."""
        return f"sqlite:///{self.optuna_db.resolve()}"

    def best_file(self, study: str) -> Path:
        return self.tuning_dir / f"{study}.json"

    def write_best(self, study: str, *, storage: str, suite: str, backbone: str, method: str,
                   seed: int, objective: str, trial: int, value: float, params: dict,
                   options: dict, heldout_anytime: list | None, baseline: dict | None,
                   trials: dict) -> dict:
        """tuning/<study>.json: the study's best complete trial, the option values its
        parameters give, and the default trial 0 (``baseline``) for comparison."""
        info = {"study": study, "storage": storage, "suite": suite, "backbone": backbone,
                "method": method, "seed": seed, "objective": objective,
                "direction": "maximize", "trial": trial, "value": value, "params": params,
                "options": options, "heldout_anytime": heldout_anytime, "baseline": baseline,
                "trials": trials, "updated": F.now()}
        write_json(self.best_file(study), info)
        return info

    def read_best(self, study: str) -> dict | None:
        """A study's best-trial file, or None when it is missing, unreadable (said in one
        line) or written by an older version without ``options``."""
        info = F.read_json_or(self.best_file(study), None, "the study's best trial is left out",
                              S.BEST_TRIAL)
        return info if isinstance(info, dict) and "options" in info else None

    def best_trials(self) -> list[dict]:
        """Every readable best-trial file of the suite's studies, sorted by file name."""
        return [info for f in sorted(_entries(self.tuning_dir)) if f.suffix == ".json"
                and (info := self.read_best(f.stem)) is not None]


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def _run_id(run: Run) -> str:
    """A run folder's id: config.json's ``run_id``, else the folder name."""
    value = run.config.get("run_id")
    return value if isinstance(value, str) and value else run.path.name


def _import_key(run: Run) -> tuple:
    """What orders imports of one run: the newest (import date, then when status.json was
    written, to the nanosecond where the file system says) wins."""
    try:
        written = run.file(F.STATUS).stat().st_mtime_ns
    except OSError:
        written = 0
    return (str((run.imported or {}).get("date") or ""), str(run.status.get("updated") or ""),
            written, run.path.name)


def _entries(folder: Path) -> list[Path]:
    """A folder's entries, sorted; none when it is missing, and none (said in one line)
    when it cannot be listed."""
    try:
        return sorted(Path(folder).iterdir())
    except FileNotFoundError:
        return []
    except OSError as err:
        F.log.warning("%s cannot be listed (%s); left out", folder, err.strerror or err)
        return []


def list_suites(results_root: Path) -> list[Path]:
    """Suite folders of a results root: the folders holding suite.json, summary.csv or run
    folders; a suite folder that is a symbolic link is left out (said in one line)."""
    out = []
    for p in _entries(results_root):
        if p.is_symlink():
            F.log.warning("%s is a symbolic link; left out (suite folders are never links)", p)
        elif F.is_entry_dir(p) and ((p / F.SUITE).exists() or (p / F.SUMMARY).exists()
                                    or any((c / F.CONFIG).exists()
                                           for c in _entries(p) if c.is_dir())):
            out.append(p)
    return out

