"""Render reports/index.html, a page per suite and a page per run from the results store.

Layout of ``reports_root``::

    index.html                     every suite: status, date, backbones, headline table
    assets/plotly.min.js           plotly's bundle, copied from the installed package
    assets/report.css
    <suite>/index.html             the suite page; its tables as CSV beside it
    <suite>/runs/<run_id>.html     a page per run; its history as CSV beside it
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from bench import fingerprint, paper
from bench.report import plots, stats, tables, tuning
from bench.store import Run, Suite, list_suites

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parent / "templates"
ASSETS = HERE.parent / "assets"

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
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(raw.to_csv(index=False), encoding="utf-8")
    if index:
        display = display.reset_index()
    rows = [["–" if _missing(v) else str(v) for v in row] for row in display.to_numpy()]
    return Table(title, [str(c) for c in display.columns], rows, filename, note,
                 links or [None] * len(rows))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _f(v, digits=2, sign=False) -> str:
    if _missing(v):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _p(v) -> str:
    if _missing(v):
        return "–"
    return f"{v:.4f}" if v >= 1e-4 else f"{v:.1e}"


def _point(kind: str, point: float) -> str:
    return f"{point:.4g} MMACs" if kind == "budget" else f"exit {int(point)}"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html"], default=True),
                             undefined=jinja2.ChainableUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["figjson"] = plots.to_script_json
    env.filters["pretty"] = lambda obj: json.dumps(obj, indent=2, sort_keys=False, default=str)
    return env


def copy_assets(reports_root: Path) -> None:
    """plotly.min.js from the installed plotly package, once, plus the stylesheet."""
    out = reports_root / "assets"
    out.mkdir(parents=True, exist_ok=True)
    import plotly

    bundle = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    target = out / "plotly.min.js"
    if not target.exists() or target.stat().st_size != bundle.stat().st_size:
        shutil.copyfile(bundle, target)
    shutil.copyfile(ASSETS / "report.css", out / "report.css")


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
    env = environment()
    reports_root.mkdir(parents=True, exist_ok=True)
    copy_assets(reports_root)
    paths = list_suites(results_root)
    chosen = select(paths, suites)
    cards = []
    for path in paths:
        suite = Suite.load(path)
        code = fingerprint.current(suite.plugins)
        stale = [r.run_id for r in suite.stale_runs(code)]
        cmp = tables.comparison(suite, code)
        if path in chosen:
            render_suite(env, suite, cmp, reports_root / suite.slug, stale)
        cards.append(index_card(suite, cmp, reports_root, stale))
    index = reports_root / "index.html"
    index.write_text(env.get_template("index.html").render(
        root=".", title="Reports", suites=cards, macs_note=MACS_NOTE,
        results_root=str(results_root)), encoding="utf-8")
    return index


# ---------------------------------------------------------------------------------------
# index


def status_of(suite: Suite, stale: list[str]) -> dict:
    text = suite.status_text + (f", {len(stale)} stale" if stale else "")
    return {"state": suite.state, "text": text, "done": suite.count("done"),
            "total": suite.total, "failed": suite.count("failed"),
            "running": suite.count("running"), "stale": len(stale)}


def headline(cmp: pd.DataFrame, backbone: str) -> pd.DataFrame:
    """Methods x budgets: mean ± std, and the difference to the joint baseline."""
    return tables.wide(cmp, "budget", backbone)


def index_card(suite: Suite, cmp: pd.DataFrame, reports_root: Path, stale: list[str]) -> dict:
    folder = reports_root / suite.slug
    heads = []
    for backbone in dict.fromkeys(cmp["backbone"]):
        wide = headline(cmp, backbone)
        if len(wide):
            raw = cmp[(cmp.backbone == backbone) & (cmp.kind == "budget")]
            heads.append(make_table(wide, raw, folder, f"headline-{_safe(backbone)}.csv",
                                    backbone, note=stale_footnote(raw)))
            heads[-1].csv = f"{suite.slug}/{heads[-1].csv}"
    return {"slug": suite.slug, "name": suite.name, "status": status_of(suite, stale),
            "date": suite.date, "backbones": suite.backbones or _list(suite.config, "backbones"),
            "dataset": _dataset(suite), "headlines": heads,
            "has_page": (folder / "index.html").exists()}


def _list(cfg: dict, key: str) -> list[str]:
    out = []
    for e in cfg.get(key) or []:
        out.append(e if isinstance(e, str) else str(e.get("label") or e.get("name")))
    return out


def _dataset(suite: Suite) -> str | None:
    for r in suite.runs:
        if r.dataset:
            return r.dataset
    d = suite.config.get("dataset")
    return d if isinstance(d, str) else (d or {}).get("name")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


# ---------------------------------------------------------------------------------------
# suite page


def stale_footnote(raw: pd.DataFrame) -> str:
    """The note under a table whose methods include stale runs (marked in the table)."""
    if "stale" not in raw or not (raw["stale"] > 0).any():
        return ""
    return (f"{tables.STALE_MARK.strip()} includes finished runs made by other code than the "
            "current (stale; see the runs table).")


def render_suite(env, suite: Suite, cmp: pd.DataFrame, folder: Path, stale: list[str]
                 ) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = suite.baseline() or tables.baseline_of(suite.rows)
    methods = sorted(dict.fromkeys(list(cmp["method"]) + suite.methods),
                     key=lambda m: tables.method_key(m, _method_name(suite, m), base))
    sections = [backbone_section(suite, cmp, b, methods, base, folder)
                for b in suite.backbones or list(dict.fromkeys(cmp["backbone"]))]
    runs = runs_table(suite, folder, stale)
    for run in suite.runs:
        render_run(env, suite, run, folder / "runs", run.run_id in stale)
    env_rows = environments(suite)
    (folder / "index.html").write_text(env.get_template("suite.html").render(
        root="..", title=suite.name, suite=suite, status=status_of(suite, stale),
        dataset=_dataset(suite), sections=sections, runs=runs, environments=env_rows,
        baseline=base, stale=stale,
        tuning=tuning.section(suite),
        config=suite.config, logits_note=LOGITS_NOTE, macs_note=MACS_NOTE), encoding="utf-8")


def _method_name(suite: Suite, label: str) -> str:
    for r in suite.runs:
        if r.method == label:
            return r.method_name
    return label


def runs_table(suite: Suite, folder: Path, stale: list[str]) -> Table:
    raw = pd.DataFrame([{"run_id": r.run_id, "backbone": r.backbone, "method": r.method,
                         "seed": r.seed, "state": r.state,
                         "stale": "stale" if r.run_id in stale else "",
                         "code": fingerprint.short(r.fingerprint) if r.status else None,
                         "epoch": r.status.get("epoch"),
                         "epochs": r.status.get("epochs"), "updated": r.status.get("updated"),
                         "error": r.status.get("error")} for r in suite.runs],
                       columns=["run_id", "backbone", "method", "seed", "state", "stale",
                                "code", "epoch", "epochs", "updated", "error"])
    links = [f"runs/{r.run_id}.html" for r in suite.runs]
    return make_table(raw, raw, folder, "runs.csv", "Runs", index=False, links=links)


def environments(suite: Suite) -> list[dict]:
    """Distinct (torch, device, code version) over the suite's runs, with run counts."""
    seen: dict[tuple, dict] = {}
    for r in suite.runs:
        e = r.environment
        if not e:
            continue
        key = (e.get("torch"), e.get("device"), e.get("code_version"), e.get("git_commit"))
        row = seen.setdefault(key, {"torch": e.get("torch"), "device": e.get("device"),
                                    "code_version": e.get("code_version"),
                                    "git_commit": e.get("git_commit"),
                                    "python": e.get("python"), "first": e.get("date"),
                                    "last": e.get("date"), "runs": 0})
        row["runs"] += 1
        if e.get("date"):
            row["first"] = min(filter(None, [row["first"], e["date"]]))
            row["last"] = max(filter(None, [row["last"], e["date"]]))
    return list(seen.values())


def backbone_section(suite: Suite, cmp: pd.DataFrame, backbone: str, methods: list[str],
                     base: str | None, folder: Path) -> dict:
    slug = _safe(backbone)
    runs = suite.runs_of(backbone)
    name = runs[0].backbone_name if runs else backbone
    dataset = _dataset(suite)
    protocol = paper.follows_protocol(dataset, name)
    sub = cmp[cmp.backbone == backbone]
    here = [m for m in methods if m in set(sub.method)]
    sec = {"backbone": backbone, "name": name, "protocol": protocol, "tables": [],
           "figures": [], "training": []}
    # costs
    costs = next((r.costs for r in runs if r.costs.get("mmacs")), None)
    if costs:
        raw = pd.DataFrame({"exit": range(1, len(costs["mmacs"]) + 1), "mmacs": costs["mmacs"],
                            "params": (costs.get("params") or [None] * len(costs["mmacs"]))})
        disp = pd.DataFrame({"exit": raw.exit, "MMACs (cumulative)": raw.mmacs.map(_f),
                             "parameters (M, cumulative)": [
                                 _f(p / 1e6, 3) if p is not None else "–" for p in raw.params]})
        sec["tables"].append(make_table(
            disp, raw, folder, f"costs-{slug}.csv", "Cost of reaching each exit",
            note=f"{MACS_NOTE} Counter: {costs.get('counter', 'fvcore')}; input "
                 f"{costs.get('input_size')}. Exit n's cost includes every earlier exit's head.",
            index=False))
    if len(sub):
        sec["figures"].append(plots.anytime(cmp, backbone, here, protocol))
        if len(sub[sub.kind == "budget"]):
            sec["figures"].append(plots.budgeted(suite, cmp, backbone, here, protocol))
        for kind, title in (("budget", "Budgeted batch: top-1 % at each average budget"),
                            ("exit", "Anytime prediction: top-1 % per exit")):
            wide = tables.wide(cmp, kind, backbone)
            if len(wide):
                sec["tables"].append(make_table(
                    wide, sub[sub.kind == kind], folder, f"{kind}-{slug}.csv", title,
                    note="mean ± standard deviation over seeds (n-1); in parentheses the "
                         f"difference to the joint baseline ({base}). "
                         + stale_footnote(sub[sub.kind == kind])))
        if base is not None and len(here) > 1:
            sig = stats.significance(suite, base, comparison=cmp)
            sig = sig[sig.backbone == backbone]
            if len(sig):
                sec["tables"].append(sig_table(sig, folder, f"significance-{slug}.csv",
                                               f"Difference to the joint baseline ({base})"))
        variants = [m for m in here if _method_name(suite, m) == "boostnet" and m != "boostnet"]
        if variants and "boostnet" in here:
            abl = stats.significance(suite, "boostnet", variants, comparison=cmp)
            abl = abl[(abl.backbone == backbone) & (abl.kind == "budget")]
            if len(abl):
                sec["tables"].append(sig_table(
                    abl, folder, f"ablation-{slug}.csv",
                    "Ablations: each BoostNet variant minus full BoostNet (label 'boostnet')",
                    options={m: _options(suite, m) for m in variants}))
        if protocol:
            sec["tables"].append(paper_table(sub, folder, f"paper-{slug}.csv"))
    for m in here or methods:
        hists = [r.history.assign(seed=r.seed) for r in suite.runs_of(backbone, m)
                 if r.history is not None and len(r.history)]
        if hists:
            h = pd.concat(hists, ignore_index=True)
            sec["training"].append(plots.history(
                h, f"{m}: per-exit curves over epochs (mean over {len(hists)} run(s))"))
    return sec


def _options(suite: Suite, label: str) -> str:
    for r in suite.runs:
        if r.method == label:
            return json.dumps((r.config.get("method") or {}).get("options") or {})
    return ""


def sig_table(sig: pd.DataFrame, folder: Path, filename: str, title: str,
              options: dict | None = None) -> Table:
    disp = pd.DataFrame({
        "method": sig.method, "at": [_point(k, p) for k, p in zip(sig.kind, sig.point)],
        "top-1 %": sig["mean"].map(_f), f"{sig.reference.iloc[0]} %": sig.reference_mean.map(_f),
        "difference": [_f(v, sign=True) for v in sig["diff"]],
        "95% CI": [f"[{_f(a, sign=True)}, {_f(b, sign=True)}]" if not _missing(a) else "–"
                   for a, b in zip(sig.ci_low, sig.ci_high)],
        "p": sig.p.map(_p), "test": sig.test,
        "n": [f"{n} {'images' if t == stats.BOOTSTRAP else 'seeds'}"
              for n, t in zip(sig.n, sig.test)]})
    note = (f"Difference in percentage points (mean over seeds). Test: {stats.TTEST} "
            "(scipy.stats.ttest_rel) where several seeds are paired, "
            f"{stats.BOOTSTRAP} ({stats.N_BOOT} resamples; per-image correctness from "
            "predictions.pt and the budget thresholds in metrics.json) where there is one.")
    if options:
        note += " Variant options: " + "; ".join(f"{k}: {v}" for k, v in options.items())
    return make_table(disp, sig, folder, filename, title, note=note, index=False)


def paper_table(sub: pd.DataFrame, folder: Path, filename: str) -> Table:
    """Our joint/boostnet means beside the paper's MSDNet/BoostNet numbers."""
    rows = []
    for name, ours in paper.OUR_METHOD.items():
        for k, (mm, top1) in enumerate(zip(paper.ANYTIME_MMACS, paper.ANYTIME_TOP1[name])):
            hit = sub[(sub.method == ours) & (sub.kind == "exit") & (sub.point == k + 1)]
            rows.append({"paper method": name, "our method": ours, "at": f"exit {k + 1}",
                         "paper MMACs": mm, "paper top-1": top1,
                         "our MMACs": hit.mmacs.iloc[0] if len(hit) else math.nan,
                         "our top-1": hit["mean"].iloc[0] if len(hit) else math.nan})
        for b, top1 in paper.BUDGETED_TOP1[name].items():
            hit = sub[(sub.method == ours) & (sub.kind == "budget") & (sub.point == b)]
            rows.append({"paper method": name, "our method": ours, "at": f"{b} MMACs budget",
                         "paper MMACs": b, "paper top-1": top1,
                         "our MMACs": hit.mmacs.iloc[0] if len(hit) else math.nan,
                         "our top-1": hit["mean"].iloc[0] if len(hit) else math.nan})
    raw = pd.DataFrame(rows)
    disp = raw.assign(**{c: raw[c].map(_f) for c in ("paper MMACs", "paper top-1",
                                                      "our MMACs", "our top-1")})
    return make_table(disp, raw, folder, filename, "The paper's numbers beside ours",
                      note=f"Paper: {paper.SOURCE}. The paper's MMACs use the reference "
                           "counter (about 0.5% below fvcore's); its MSDNet is joint training.",
                      index=False)


# ---------------------------------------------------------------------------------------
# run page


def render_run(env, suite: Suite, run: Run, folder: Path, stale: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    t = []
    m = run.metrics or {}
    if m.get("anytime"):
        raw = pd.DataFrame(m["anytime"])
        t.append(make_table(raw.assign(**{c: raw[c].map(_f) for c in raw if c != "exit"}),
                            raw, folder, f"{run.run_id}-anytime.csv",
                            "Anytime prediction (test)", index=False))
    budgeted = m.get("budgeted") or []
    if budgeted:
        n = max(len(b.get("exit_shares") or []) for b in budgeted)
        raw = pd.DataFrame([{"budget_mmacs": b.get("budget_mmacs"), "accuracy": b.get("accuracy"),
                             "mmacs": b.get("mmacs"),
                             **{f"exit {k + 1}": (b.get("exit_shares") or [None] * n)[k]
                                if k < len(b.get("exit_shares") or []) else None
                                for k in range(n)}} for b in budgeted])
        disp = pd.DataFrame({"budget (MMACs)": raw.budget_mmacs.map(lambda v: f"{v:g}"),
                             "top-1 %": raw.accuracy.map(_f),
                             "realized MMACs": raw.mmacs.map(_f),
                             **{c: raw[c].map(lambda v: "–" if _missing(v) else f"{100 * v:.1f} %")
                                for c in raw.columns[3:]}})
        t.append(make_table(disp, raw, folder, f"{run.run_id}-exit-shares.csv",
                            "Share of test images leaving at each exit, per budget",
                            note=LOGITS_NOTE, index=False))
    figures = []
    if budgeted:
        figures.append(plots.exit_shares(budgeted))
    hist = run.history
    if hist is not None and len(hist):
        figures.append(plots.history(hist, "Per-exit curves over epochs"))
        values = [c for c in ("train_loss", "effective_share", "heldout_top1") if c in hist]
        wide = hist.pivot_table(index="epoch", columns="exit", values=values)
        wide.columns = [f"{v} exit {int(e)}" for v, e in wide.columns]
        lead = hist.groupby("epoch")[[c for c in ("stage", "lr") if c in hist]].first()
        wide = lead.join(wide).reset_index()
        disp = wide.assign(**{c: wide[c].map(lambda v: "–" if _missing(v) else f"{v:.4g}")
                              for c in wide.columns if c != "epoch"})
        t.append(make_table(disp, hist, folder, f"{run.run_id}-history.csv",
                            "History per epoch", index=False,
                            note="train_loss: mean CE of the exit's training objective (– "
                                 "where inactive); effective_share: paper Fig. 3a; "
                                 "heldout_top1: F_n on the held-out split."))
    (folder / f"{run.run_id}.html").write_text(env.get_template("run.html").render(
        root="../..", title=f"{run.run_id}", suite=suite, run=run, tables=t, figures=figures,
        stale=stale, code=fingerprint.short(run.fingerprint),
        costs=run.costs, macs_note=MACS_NOTE), encoding="utf-8")
