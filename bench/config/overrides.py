"""``--set KEY.PATH=VALUE`` overrides, applied to the raw suite before validation."""
from __future__ import annotations

import copy
import re
from typing import Any, Callable, Sequence

import yaml

from bench.config.checker import found, join
from bench.config.loading import parse_value, yaml_error
from bench.errors import SuiteError

EXAMPLE = "training.epochs=3 or methods[1].options.temperature=0.25"


def parse(file: str, text: str) -> tuple[list, Any]:
    """``a.b[2].c=VALUE`` -> (["a", "b", 2, "c"], parsed YAML value)."""
    key, eq, value = text.partition("=")
    parts: list = []
    for seg in key.strip().split("."):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)", seg)
        if not eq or not m:
            raise SuiteError(file, "", f"override {text!r}: expected KEY.PATH=VALUE, e.g. "
                                       f"{EXAMPLE}")
        parts += [m.group(1)] + [int(i) for i in re.findall(r"\d+", m.group(2))]
    try:
        parsed = parse_value(value)
    except yaml.YAMLError as err:
        raise SuiteError(file, "", f"override {text!r}: value: {yaml_error(err)}") from None
    return parts, parsed


def apply(file: str, raw: dict, text: str) -> str:
    """Set one KEY.PATH=VALUE in the raw suite (in place); returns the key path."""
    parts, value = parse(file, text)
    node, path = raw, ""

    def bad(message):
        raise SuiteError(file, path, f"override {text!r}: {message}")

    for part, nxt in zip(parts, parts[1:] + [None]):
        if isinstance(part, str):
            if not isinstance(node, dict):
                bad(f"{path or 'the suite'} is {found(node)}, not a mapping")
            if nxt is not None and node.get(part) is None:
                if isinstance(nxt, int):
                    bad(f"{join(path, part)} is not set, so it has no item [{nxt}]")
                node[part] = {}
        else:
            if not isinstance(node, list):
                bad(f"{path} is {found(node)}, not a list")
            if part >= len(node):
                bad(f"{path} has {len(node)} items, so there is no [{part}]")
        path = join(path, part)
        if nxt is None:
            node[part] = value
        else:
            if isinstance(node[part], str) and isinstance(nxt, str):
                node[part] = {"name": node[part]}  # "boostnet" -> {name: boostnet, ...}
            node = node[part]
    return path


def with_overrides(file: str, raw: dict, overrides: Sequence[str], resolve: Callable):
    """``resolve(copy of raw with overrides applied)``; an error about a key an override set
    says which override it comes from."""
    raw = copy.deepcopy(raw)
    set_paths = [(apply(file, raw, text), text) for text in overrides]
    try:
        return resolve(raw)
    except SuiteError as err:
        hits = [text for p, text in set_paths
                if err.path == p or err.path.startswith((p + ".", p + "["))
                or p.startswith((err.path + ".", err.path + "["))]
        if not hits:
            raise
        raise SuiteError(file, err.path,
                         f"{err.message} (set by override {hits[-1]!r})") from None
