"""One suite folder, ``results/<suite slug>/``: suite.json, summary.csv, the run folders and
the tuning studies' best-trial files.

Like :class:`bench.store.run.Run`, reading is tolerant and writing atomic. A suite in
progress, a failed run or a half-written folder reads fine: every file is optional, and a
file that exists but cannot be read is named in one line and left out.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from bench.fileio import write_json, write_text
from bench.store import files as F
from bench.store import schema as S
from bench.store.run import Run


class Suite:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.slug = self.path.name

    def __repr__(self) -> str:
        return f"Suite({str(self.path)!r})"

    def run(self, run_id: str) -> Run:
        return Run(self.path / run_id)

    # -- reading ------------------------------------------------------------------------
    @cached_property
    def runs(self) -> list[Run]:
        """Run folders: those holding a config.json or a status.json."""
        return [Run(p) for p in _entries(self.path) if F.is_entry_dir(p)
                and any((p / f).exists() for f in (F.CONFIG, F.STATUS))]

    @cached_property
    def config(self) -> dict:
        """suite.json: the resolved suite, plus ``run_count`` and ``run_ids``."""
        return F.read_json_or(self.path / F.SUITE, {}, "the suite's settings read as empty",
                              S.SUITE)

    def has_suite_json(self) -> bool:
        return (self.path / F.SUITE).exists()

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.slug)

    @property
    def total(self) -> int:
        """Runs the suite expands to (suite.json's run_count), at least the run folders."""
        count = self.config.get("run_count")
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
        """A one-word status for the suite: done, failed, running, pending or empty."""
        if not self.runs and not self.total:
            return "empty"
        if self.count("failed"):
            return "failed"
        if self.count("done") == self.total:
            return "done"
        if self.count("running") or self.count("done"):
            return "running"
        return "pending"

    @property
    def status_text(self) -> str:
        parts = [f"{self.count('done')}/{self.total} runs done"]
        for state in ("failed", "running"):
            if self.count(state):
                parts.append(f"{self.count(state)} {state}")
        return ", ".join(parts)

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
        folders = {r.run_id for r in self.runs} | {r.path.name for r in self.runs}
        summary = F.read_csv_or_none(self.path / F.SUMMARY, tuple(F.SUMMARY_COLUMNS),
                                     S.SUMMARY_NUMERIC)
        if summary is not None and len(summary):
            extra = summary[~summary["run_id"].astype(str).isin(folders)].copy()
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
        removed = F.remove_temporary(self.path, (F.SUITE, F.SUMMARY))
        moved = []
        _, problem = F.json_problem(self.path / F.SUITE, S.SUITE)
        if problem:
            moved.append((F.SUITE, problem, F.set_aside(self.path / F.SUITE)))
        _, problem = F.csv_problem(self.path / F.SUMMARY, tuple(F.SUMMARY_COLUMNS),
                                   S.SUMMARY_NUMERIC)
        if problem:
            moved.append((F.SUMMARY, problem, F.set_aside(self.path / F.SUMMARY)))
        self.__dict__.pop("config", None)
        return removed, moved

    def write_suite(self, config: dict, run_ids: list[str]) -> None:
        """suite.json: the resolved suite (every default filled, overrides applied) with
        the number of runs it expands to and their ids."""
        content = {**config, "run_count": len(run_ids), "run_ids": list(run_ids)}
        write_json(self.path / F.SUITE, content)
        self.__dict__["config"] = content

    def write_summary(self) -> Path:
        """Rebuild summary.csv from every run folder (hold :attr:`summary_lock_path` while
        other workers may write too)."""
        self.__dict__.pop("runs", None)
        rows = [row for r in self.runs if r.file(F.CONFIG).exists()
                for row in r.refresh().summary_rows(self.name)]
        frame = pd.DataFrame(rows, columns=F.SUMMARY_COLUMNS)
        path = self.path / F.SUMMARY
        write_text(path, frame.to_csv(index=False))
        return path

    @property
    def summary_lock_path(self) -> Path:
        return self.path / F.SUMMARY_LOCK

    # -- tuning -------------------------------------------------------------------------
    @property
    def tuning_dir(self) -> Path:
        return self.path / F.TUNING

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
    folders."""
    return [p for p in _entries(results_root) if F.is_entry_dir(p)
            and ((p / F.SUITE).exists() or (p / F.SUMMARY).exists()
                 or any((c / F.CONFIG).exists() for c in _entries(p) if c.is_dir()))]

