"""Render reports/index.html, a page per suite and a page per run from the results store.

Layout of ``reports_root``::

    index.html                     every suite: status, date, backbones, headline table
    assets/plotly.min.js           plotly's bundle, copied from the installed package
    assets/report.css
    <suite>/index.html             the suite page (suite_page); its tables as CSV beside it
    <suite>/leaderboard.html       methods x exit rules x budgets, training cost, published
                                   numbers (leaderboard)
    <suite>/runs/<run_id>.html     a page per run (run_page); its history as CSV beside it

Runs made by other code than the current one (their code fingerprint differs) are marked
stale everywhere they appear. The tables use each suite's current runs alone
(bench.store.Suite.runs); the runs of other settings are listed apart on the suite page.

Every file is written like the store writes results (bench.fileio): a temporary file in the
same folder renamed over the target, so a reader or a kill never leaves half a page, and a
symbolic link at a page's name is replaced, never written through. The folders under
``reports_root`` (``assets``, a suite's, its ``runs``) must not be links (the root may be).
Renders of one reports folder take turns (a lock, ``reports_root/.lock``); each deletes the
temporary files a killed render left in the folders it writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pandas as pd

from bench import fingerprint
from bench.fileio import copy_file, locked, make_folders, remove_temporary, write_text
from bench.report import plots, summary, tables
from bench.report.common import (MACS_NOTE, dataset_of, make_table, safe, stale_footnote,
                                 status_of)
from bench.report.leaderboard import PAGE as LEADERBOARD, render_leaderboard
from bench.report.suite_page import render_suite
from bench.store import Suite, list_suites

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parent / "templates"
ASSETS = HERE.parent / "assets"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html"], default=True),
                             undefined=jinja2.ChainableUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["figjson"] = plots.to_script_json
    env.filters["pretty"] = lambda obj: json.dumps(obj, indent=2, sort_keys=False, default=str)
    return env


def folder(path: Path, reports_root: Path) -> Path:
    """A folder of the report: made (none below the root a link) and cleared of the
    temporary files of killed renders (hold the report's lock)."""
    make_folders(path, reports_root)
    remove_temporary(path)
    return path


def copy_assets(reports_root: Path) -> None:
    """plotly.min.js from the installed plotly package, once, plus the stylesheet."""
    out = folder(reports_root / "assets", reports_root)
    import plotly

    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    target = out / "plotly.min.js"
    if (target.is_symlink() or not target.is_file()
            or target.stat().st_size != bundle.stat().st_size):
        copy_file(bundle, target)
    copy_file(ASSETS / "report.css", out / "report.css")


def select(paths: list[Path], wanted: list[str] | None) -> list[Path]:
    """Suites by folder name or display name (all when ``wanted`` is empty)."""
    if not wanted:
        return paths
    out = []
    for w in wanted:
        hits = [p for p in paths if p.name == w or Suite(p).name == w]
        if not hits:
            raise ValueError(f"no results for suite {w!r}; found: "
                             f"{', '.join(p.name for p in paths) or 'none'}")
        out += [p for p in hits if p not in out]
    return out


def render(results_root: Path, reports_root: Path, suites: list[str] | None = None) -> Path:
    """Render the pages of ``suites`` (all when None) and the index of every suite."""
    results_root, reports_root = Path(results_root), Path(reports_root)
    env = environment()
    paths = list_suites(results_root)
    chosen = select(paths, suites)
    reports_root.mkdir(parents=True, exist_ok=True)
    with locked(reports_root / ".lock"):
        return _render(env, results_root, reports_root, paths, chosen)


def _render(env, results_root: Path, reports_root: Path, paths: list[Path],
            chosen: list[Path]) -> Path:
    folder(reports_root, reports_root)
    copy_assets(reports_root)
    cards = []
    for path in paths:
        suite = Suite(path)
        code = fingerprint.current(suite.plugins)
        stale = [r.run_id for r in suite.stale_runs(code)]
        cmp = tables.comparison(suite, code)
        lines = summary.summary(suite, cmp)  # (page and card: computed once)
        pages = folder(reports_root / suite.slug, reports_root)
        if path in chosen:
            folder(pages / "runs", reports_root)
            render_suite(env, suite, cmp, pages, stale, lines)
            render_leaderboard(env, suite, pages, stale, code)
        cards.append(index_card(suite, cmp, reports_root, stale, lines))
    index = reports_root / "index.html"
    write_text(index, env.get_template("index.html").render(
        root=".", title="Reports", suites=cards, macs_note=MACS_NOTE,
        results_root=str(results_root)))
    return index


def index_card(suite: Suite, cmp: pd.DataFrame, reports_root: Path, stale: list[str],
               lines: list[str]) -> dict:
    """A suite on the index: status, data set, backbones, what its numbers show (``lines``:
    a sentence per backbone), its description, and per backbone the headline (methods x
    budgets, mean ± std, difference to the baseline)."""
    folder = reports_root / suite.slug
    heads = []
    for backbone in dict.fromkeys(cmp["backbone"]):
        wide = tables.wide(cmp, "budget", backbone)
        if len(wide):
            raw = cmp[(cmp.backbone == backbone) & (cmp.kind == "budget")]
            heads.append(make_table(wide, raw, folder, f"headline-{safe(backbone)}.csv",
                                    backbone, note=stale_footnote(raw)))
            heads[-1].csv = f"{suite.slug}/{heads[-1].csv}"
    backbones = suite.backbones or [str(e.get("label") or e.get("name"))
                                    for e in suite.config.get("backbones") or []
                                    if isinstance(e, dict)]
    return {"slug": suite.slug, "name": suite.name, "status": status_of(suite, stale),
            "date": suite.date, "backbones": backbones, "dataset": dataset_of(suite),
            "summary": lines,
            "description": suite.config.get("description") or "",
            "baseline": suite.baseline, "headlines": heads,
            "has_page": (folder / "index.html").exists(),
            "has_leaderboard": (folder / LEADERBOARD).exists()}
