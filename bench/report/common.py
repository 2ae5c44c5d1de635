"""What every page of the report shares: tables with their CSV beside them, number
formatting, the standing notes, and a suite's status line."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.fileio import write_text
from bench.report import stats, tables
from bench.store import Suite

LOGITS_NOTE = ("Budgeted batch results are computed from the saved logits of all exits "
               "(predictions.pt): early exiting is simulated with thresholds fitted on the "
               "held-out split, not measured by running the network exit by exit.")
MACS_NOTE = "MMACs are fvcore multiply-adds (one fused multiply-add = 1), in millions per image."


@dataclass
class Table:
    """A table for the page (display strings) and the CSV of its raw values beside it."""
    title: str
    columns: list[str]
    rows: list[list[str]]
    csv: str  # href, relative to the page
    note: str = ""
    links: list[str | None] = field(default_factory=list)  # per row: href of the first cell


def make_table(display: pd.DataFrame, raw: pd.DataFrame, folder: Path, filename: str,
               title: str, note: str = "", index: bool = True, links=None) -> Table:
    write_text(folder / filename, raw.to_csv(index=False))
    if index:
        display = display.reset_index()
    rows = [["–" if missing(v) else str(v) for v in row] for row in display.to_numpy()]
    return Table(title, [str(c) for c in display.columns], rows, filename, note,
                 links or [None] * len(rows))


def missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v, digits=2, sign=False) -> str:
    if missing(v):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def fmt_p(v) -> str:
    if missing(v):
        return "–"
    return f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}"


def point_label(kind: str, point: float) -> str:
    return f"{point:.4g} MMACs" if kind == "budget" else f"exit {int(point)}"


def safe(text: str) -> str:
    """A file-name-safe form of a label."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


def dataset_of(suite: Suite) -> str | None:
    for r in suite.runs:
        if r.dataset:
            return r.dataset
    d = suite.config.get("dataset")
    return d if isinstance(d, str) else (d or {}).get("name")


def status_of(suite: Suite, stale: list[str]) -> dict:
    text = suite.status_text + (f", {len(stale)} stale" if stale else "")
    return {"state": suite.state, "text": text, "done": suite.count("done"),
            "total": suite.total, "failed": suite.count("failed"),
            "running": suite.count("running"), "interrupted": suite.count("interrupted"),
            "stale": len(stale)}


def stale_footnote(raw: pd.DataFrame) -> str:
    """The note under a table whose methods include stale runs (marked in the table)."""
    if "stale" not in raw or not (raw["stale"] > 0).any():
        return ""
    return (f"{tables.STALE_MARK.strip()} includes finished runs made by other code than the "
            "current (stale; see the runs table).")


def test_columns(sig: pd.DataFrame) -> dict[str, list]:
    """The columns every significance table shows for rows of bench.report.stats tests:
    difference, 95% CI, p, test and n (seeds, or images for the bootstrap)."""
    return {
        "difference": [fmt(v, sign=True) for v in sig["diff"]],
        "95% CI": [f"[{fmt(a, sign=True)}, {fmt(b, sign=True)}]" if not missing(a) else "–"
                   for a, b in zip(sig.ci_low, sig.ci_high)],
        "p": list(sig.p.map(fmt_p)), "test": list(sig.test),
        "n": [f"{n} {'images' if t == stats.BOOTSTRAP else 'seeds'}"
              for n, t in zip(sig.n, sig.test)]}
