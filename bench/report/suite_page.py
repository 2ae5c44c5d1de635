"""A suite's page: per backbone the costs, curves, comparison tables, significance against
the suite's baseline, ablations (every variant of a method against that method's reference
variant), the paper's numbers where the protocol matches, training curves; then tuning,
the runs and their environments. Everything comes from the store."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bench import fingerprint
from bench.evaluate import paper
from bench.fileio import write_text
from bench.report import latency, plots, stats, tables, trust, tuning
from bench.report.common import (LOGITS_NOTE, MACS_NOTE, Table, dataset_of, fmt, make_table,
                                 point_label, safe, stale_footnote, status_of,
                                 test_columns)
from bench.report.run_page import render_run
from bench.store import Run, Suite


def render_suite(env, suite: Suite, cmp: pd.DataFrame, folder: Path, stale: list[str],
                 summary_lines: list[str]) -> None:
    base = suite.baseline
    labels = suite.method_labels + [m for m in cmp["method"] if m not in suite.method_labels]
    sections = [backbone_section(suite, cmp, b, labels, base, folder)
                for b in suite.backbones or list(dict.fromkeys(cmp["backbone"]))]
    runs = runs_table(suite, folder, stale)
    for run in suite.folders:  # other settings' runs too: the list below links them
        render_run(env, suite, run, folder / "runs", run.run_id in stale)
    write_text(folder / "index.html", env.get_template("suite.html").render(
        root="..", title=suite.name, suite=suite, status=status_of(suite, stale),
        summary=summary_lines,
        dataset=dataset_of(suite), sections=sections, runs=runs,
        other_runs=other_runs_table(suite, folder),
        environments=environments(suite), baseline=base, stale=stale,
        tuning=tuning.section(suite), latency=latency.section(suite, folder),
        trust=trust.section(suite, folder),
        config=suite.config, logits_note=LOGITS_NOTE,
        macs_note=MACS_NOTE))


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


IGNORED = ("run_id", "suite", "seed", "imported", "tuned")  # not settings


def other_runs_table(suite: Suite, folder: Path) -> Table | None:
    """Runs in the folder that are not the suite's current runs (other settings, earlier
    imports): listed, with what differs, never in the tables above."""
    others = suite.other_runs
    if not others:
        return None
    raw = pd.DataFrame([{"run_id": r.run_id, "backbone": r.backbone, "method": r.method,
                         "seed": r.seed, "state": r.state, "why": suite.why_other(r),
                         "differs": differences(r, suite.runs),
                         "updated": r.status.get("updated")} for r in others],
                       columns=["run_id", "backbone", "method", "seed", "state", "why",
                                "differs", "updated"])
    return make_table(raw, raw, folder, "other-runs.csv",
                      f"Runs not in the tables ({suite.others_text()})",
                      note="Finished or started runs in the results folder whose settings "
                           "differ from the suite's last bench run (suite.json's run_ids), "
                           "and imports replaced by a newer import of the same run. They are "
                           "kept on disk and never averaged with the current runs; "
                           "`bench results SUITE.yaml --set KEY=VALUE` shows the table of "
                           "other settings on purpose.", index=False,
                      links=[f"runs/{r.run_id}.html" for r in others])


def differences(run: Run, current: list[Run], shown: int = 3) -> str:
    """How ``run``'s settings (config.json) differ from a current run's, the one of the
    same backbone and method where there is one: ``training.epochs: 1 (current 2)``."""
    peers = [r for r in current if (r.backbone, r.method) == (run.backbone, run.method)]
    peer = (peers or current or [None])[0]
    if peer is None:
        return ""
    mine, theirs = _flat(run.config), _flat(peer.config)
    keys = [k for k in dict.fromkeys([*mine, *theirs])
            if k.split(".")[0] not in IGNORED and mine.get(k) != theirs.get(k)]
    text = [f"{k}: {_show(mine.get(k))} (current {_show(theirs.get(k))})"
            for k in keys[:shown]]
    return "; ".join(text) + (f"; {len(keys) - shown} more" if len(keys) > shown else "")


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _show(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def environments(suite: Suite) -> list[dict]:
    """Distinct (torch, device, code version, commit) over the suite's runs, with counts."""
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


def backbone_section(suite: Suite, cmp: pd.DataFrame, backbone: str, labels: list[str],
                     base: str | None, folder: Path) -> dict:
    slug = safe(backbone)
    runs = suite.runs_of(backbone)
    name = runs[0].backbone_name if runs else backbone
    protocol = paper.follows_protocol(dataset_of(suite), name)
    sub = cmp[cmp.backbone == backbone]
    here = [m for m in labels if m in set(sub.method)]
    sec = {"backbone": backbone, "name": name, "protocol": protocol, "tables": [],
           "figures": [], "training": []}
    costs = next((r.costs for r in runs if r.costs.get("mmacs")), None)
    if costs:
        sec["tables"].append(costs_table(costs, folder, f"costs-{slug}.csv"))
    if len(sub):
        sec["figures"].append(plots.anytime(cmp, backbone, here, protocol))
        if len(sub[sub.kind == "budget"]):
            sec["figures"].append(plots.budgeted(suite, cmp, backbone, here, protocol))
        sec["tables"] += comparison_tables(cmp, sub, backbone, base, folder, slug)
        if base is not None and len(here) > 1:
            sig = stats.significance(suite, base, comparison=cmp)
            sig = sig[sig.backbone == backbone]
            if len(sig):
                sec["tables"].append(sig_table(sig, folder, f"significance-{slug}.csv",
                                               f"Difference to the baseline ({base})"))
        ablation = ablation_table(suite, cmp, backbone, here, folder, f"ablation-{slug}.csv")
        if ablation is not None:
            sec["tables"].append(ablation)
        if protocol:
            sec["tables"].append(paper_table(sub, suite.paper_labels(), folder,
                                             f"paper-{slug}.csv"))
    for m in here or labels:
        hists = [r.history.assign(seed=r.seed) for r in suite.runs_of(backbone, m)
                 if r.history is not None and len(r.history)]
        if hists:
            h = pd.concat(hists, ignore_index=True)
            sec["training"].append(plots.history(
                h, f"{m}: per-exit curves over epochs (mean over {len(hists)} run(s))"))
    return sec


def costs_table(costs: dict, folder: Path, filename: str) -> Table:
    raw = pd.DataFrame({"exit": range(1, len(costs["mmacs"]) + 1), "mmacs": costs["mmacs"],
                        "params": (costs.get("params") or [None] * len(costs["mmacs"]))})
    disp = pd.DataFrame({"exit": raw.exit, "MMACs (cumulative)": raw.mmacs.map(fmt),
                         "parameters (M, cumulative)": [
                             fmt(p / 1e6, 3) if p is not None else "–" for p in raw.params]})
    return make_table(disp, raw, folder, filename, "Cost of reaching each exit",
                      note=f"{MACS_NOTE} Counter: {costs.get('counter', 'fvcore')}; input "
                           f"{costs.get('input_size')}. Exit n's cost includes every earlier "
                           "exit's head.", index=False)


def comparison_tables(cmp: pd.DataFrame, sub: pd.DataFrame, backbone: str, base: str | None,
                      folder: Path, slug: str) -> list[Table]:
    out = []
    against = f"the difference to the baseline ({base})" if base else "no baseline"
    for kind, title in (("budget", "Budgeted batch: top-1 % at each average budget"),
                        ("exit", "Anytime prediction: top-1 % per exit")):
        wide = tables.wide(cmp, kind, backbone)
        if len(wide):
            out.append(make_table(
                wide, sub[sub.kind == kind], folder, f"{kind}-{slug}.csv", title,
                note=f"mean ± standard deviation over seeds (n-1); in parentheses {against}. "
                     + stale_footnote(sub[sub.kind == kind])))
    return out


def ablation_table(suite: Suite, cmp: pd.DataFrame, backbone: str, here: list[str],
                   folder: Path, filename: str) -> Table | None:
    """Every variant of a method (same method, other options) against that method's
    reference variant (the one with the method's default options), at each budget."""
    parts, options = [], {}
    for name, reference in suite.reference_labels().items():
        variants = [m for m in here if suite.method_name(m) == name and m != reference]
        if not variants or reference not in here:
            continue
        sig = stats.significance(suite, reference, variants, comparison=cmp)
        parts.append(sig[(sig.backbone == backbone) & (sig.kind == "budget")])
        options.update({m: changed_options(suite, m, reference) for m in variants})
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if not len(frame):
        return None
    return sig_table(frame, folder, filename, "Ablations: each variant minus its method's "
                     "reference variant (the method's default options)", options=options)


def changed_options(suite: Suite, label: str, reference: str) -> str:
    """The options in which a variant differs from its reference variant, as JSON."""
    entries = {m.get("label"): m.get("options") or {} for m in suite.method_entries}
    mine, ref = entries.get(label, {}), entries.get(reference, {})
    return json.dumps({k: v for k, v in mine.items() if ref.get(k) != v})


def sig_table(sig: pd.DataFrame, folder: Path, filename: str, title: str,
              options: dict | None = None) -> Table:
    """Differences with their test. One reference (the baseline): its mean is a column
    named after it; several (ablations of several methods): a reference column."""
    references = list(dict.fromkeys(sig.reference))
    ref_cols = ({f"{references[0]} %": sig.reference_mean.map(fmt)} if len(references) == 1
                else {"reference": sig.reference, "reference %": sig.reference_mean.map(fmt)})
    disp = pd.DataFrame({
        "method": sig.method, "at": [point_label(k, p) for k, p in zip(sig.kind, sig.point)],
        "top-1 %": sig["mean"].map(fmt), **ref_cols,
        **test_columns(sig)})
    note = (f"Difference in percentage points (mean over seeds). Test: {stats.TTEST} "
            "(scipy.stats.ttest_rel) where several seeds are paired, "
            f"{stats.BOOTSTRAP} ({stats.N_BOOT} resamples; per-image correctness from "
            "predictions.pt and the budget thresholds in metrics.json) where there is one.")
    if options:
        note += " Options that differ from the reference: " + "; ".join(
            f"{k}: {v}" for k, v in options.items())
    return make_table(disp, sig, folder, filename, title, note=note, index=False)


def paper_table(sub: pd.DataFrame, ours: dict[str, str], folder: Path, filename: str) -> Table:
    """Our means beside the paper's numbers, each paper curve beside the method label that
    stands for it (``ours``: curve name -> label, from suite.json)."""
    rows = []
    for name in paper.ANYTIME_TOP1:
        label = ours.get(name)
        points = [(f"exit {k + 1}", "exit", k + 1, mm, top1) for k, (mm, top1) in
                  enumerate(zip(paper.ANYTIME_MMACS, paper.ANYTIME_TOP1[name]))]
        points += [(f"{b} MMACs budget", "budget", b, b, top1)
                   for b, top1 in paper.BUDGETED_TOP1[name].items()]
        for at, kind, point, mm, top1 in points:
            hit = sub[(sub.method == label) & (sub.kind == kind) & (sub.point == point)]
            rows.append({"paper method": name, "our method": label, "at": at,
                         "paper MMACs": mm, "paper top-1": top1,
                         "our MMACs": hit.mmacs.iloc[0] if len(hit) else math.nan,
                         "our top-1": hit["mean"].iloc[0] if len(hit) else math.nan})
    raw = pd.DataFrame(rows)
    disp = raw.assign(**{c: raw[c].map(fmt) for c in ("paper MMACs", "paper top-1",
                                                       "our MMACs", "our top-1")})
    return make_table(disp, raw, folder, filename, "The paper's numbers beside ours",
                      note=f"Paper: {paper.SOURCE}. The paper's MMACs use the reference "
                           "counter (about 0.5% below fvcore's); each paper curve stands "
                           "beside the method label marked for it (suite.json 'paper').",
                      index=False)
