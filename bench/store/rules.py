"""Exit-rule results inside metrics.json (``rules``): how a rule is named and found.

Each entry of ``metrics["rules"]`` is one (combiner, criterion) pair as
``bench.evaluate.evaluate_rules`` returns it: ``combiner``, ``combiner_options``, ``criterion``,
``anytime``, ``curve``, ``budgeted`` and, where the global fit was asked for,
``budgeted_global``. The top-level ``anytime``/``budgeted``/``curve`` of metrics.json are the
default rule (combiner ``none``, criterion ``max_softmax``, per-exit thresholds); metrics
written before rules existed have only those, and read as that one rule.
"""
from __future__ import annotations

import json

# the names and keys bench.evaluate writes metrics.json with, defined there once
from bench.evaluate import (ANYTIME_QUALITY, DEFAULT_COMBINER, DEFAULT_CRITERION, ERROR,
                            GLOBAL, PER_EXIT, RISK_CONTROL, RULES, split_combiner)

FITS = {PER_EXIT: "per exit", GLOBAL: "global"}
TRUST = (ANYTIME_QUALITY, RISK_CONTROL)  # the trustworthy-exit blocks of an entry


def combiner_label(name: str, options: dict | None = None) -> str:
    """``product`` or ``product(weights=linear)``: what tables call a combiner."""
    if not options:
        return name
    args = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in sorted(options.items()))
    return f"{name}({args})"


def rule_label(combiner: str, options: dict | None, criterion: str) -> str:
    """``product(weights=linear) / entropy``."""
    return f"{combiner_label(combiner, options)} / {criterion}"


def entry_label(entry: dict) -> str:
    return rule_label(str(entry.get("combiner")), entry.get("combiner_options") or {},
                      str(entry.get("criterion")))


def _key(combiner: str, options: dict | None, criterion: str) -> str:
    return json.dumps([combiner, options or {}, criterion], sort_keys=True)


def entry_key(entry: dict) -> str:
    return _key(str(entry.get("combiner")), entry.get("combiner_options"),
                str(entry.get("criterion")))


def is_default(entry: dict) -> bool:
    return entry_key(entry) == _key(DEFAULT_COMBINER, {}, DEFAULT_CRITERION)


def default_entry(metrics: dict) -> dict:
    """The default rule from metrics.json's top-level keys (metrics without ``rules``)."""
    return {"combiner": DEFAULT_COMBINER, "combiner_options": {},
            "criterion": DEFAULT_CRITERION,
            "anytime": [{"exit": a.get("exit"), "mmacs": a.get("mmacs"), "top1": a.get("top1")}
                        for a in metrics.get("anytime") or []],
            "curve": list(metrics.get("curve") or []),
            PER_EXIT: list(metrics.get("budgeted") or []),
            **trust_blocks(metrics)}


def trust_blocks(metrics: dict | None) -> dict:
    """The default rule's trustworthy-exit blocks (metrics.json's top-level
    ``anytime_quality`` and ``risk_control``, where present): {key: block}."""
    return {k: (metrics or {})[k] for k in TRUST if isinstance((metrics or {}).get(k), dict)}


def entries(metrics: dict | None) -> list[dict]:
    """The rule entries of a metrics.json (the default rule alone for older files)."""
    if not metrics:
        return []
    found = [e for e in metrics.get(RULES) or [] if isinstance(e, dict)]
    if not any(is_default(e) for e in found) and metrics.get("anytime"):
        found = [default_entry(metrics)] + found
    return found


def missing(metrics: dict | None, criteria, combiners, global_threshold: bool) -> list[str]:
    """Labels of the asked-for rules that ``metrics["rules"]`` lacks (with the global fit
    where it is asked for)."""
    have = {entry_key(e): e for e in (metrics or {}).get(RULES) or [] if isinstance(e, dict)}
    out = []
    for spec in combiners:
        name, options = split_combiner(spec)
        for criterion in criteria:
            hit = have.get(_key(name, options, criterion))
            if hit is None or (global_threshold and GLOBAL not in hit):
                out.append(rule_label(name, options, criterion))
    return out


def asked_entries(metrics: dict | None, criteria, combiners) -> list[dict]:
    """The entries of ``metrics["rules"]`` that the asked-for rules have (in their order)."""
    have = {entry_key(e): e for e in (metrics or {}).get(RULES) or [] if isinstance(e, dict)}
    keys = [_key(*split_combiner(spec), criterion) for spec in combiners for criterion in criteria]
    return [have[k] for k in keys if k in have]


def merged(old: list[dict] | None, new: list[dict]) -> list[dict]:
    """``new`` entries, then the old entries ``new`` does not replace (rules a suite no
    longer asks for stay in metrics.json)."""
    keys = {entry_key(e) for e in new}
    return list(new) + [e for e in old or [] if isinstance(e, dict) and entry_key(e) not in keys]
