"""Reading suite files: strict YAML, and the suite's folder name without validating the rest.

Strict: duplicate keys, aliases (``*name``, so no value can expand into many: a few hundred
bytes of nested aliases would otherwise take gigabytes) and nesting deeper than
MAX_DEPTH are errors that name the file and the line."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from bench.config.checker import found
from bench.config.schema import TOP_LEVEL
from bench.errors import SuiteError


MAX_DEPTH = 100  # nested lists and mappings; a suite needs fewer than 10


class Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, aliases and deep nesting, and reads 1e-4 as
    a float (YAML 1.1 would read it as text)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"found the alias *{event.anchor}: aliases are not allowed in "
                "suite files (write the value out)", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def yaml_error(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}invalid YAML: {problem}" + (f" ({context})" if context else "")


def parse_value(text: str) -> Any:
    """One YAML value (an override's right-hand side); raises yaml.YAMLError."""
    return yaml.load(text, Loader=Loader)


def read_raw(path: str | Path) -> Any:
    """The parsed suite file, not yet validated."""
    file, p = str(path), Path(path)
    if not p.is_file():
        raise SuiteError(file, "", "no such file" if not p.exists() else "not a file")
    try:
        with open(p, encoding="utf-8") as f:
            return yaml.load(f, Loader=Loader)
    except yaml.YAMLError as err:
        raise SuiteError(file, "", yaml_error(err)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(file, "", f"cannot read: {err}") from None


def check_mapping(raw: Any, file: str) -> dict:
    if not isinstance(raw, dict):
        raise SuiteError(file, "", f"expected a mapping of suite keys ({', '.join(TOP_LEVEL)}), "
                                   f"found {'an empty file' if raw is None else found(raw)}")
    return raw


def slugify(name: str) -> str:
    """The results folder name of a suite's display name: results/<slug>/.

    An ASCII name keeps the slug it always had (runs of ``[^A-Za-z0-9_.-]`` become ``-``,
    ``suite`` when nothing is left), so users' results folders do not move. A name with
    other characters (``实验二``, ``✓✓✓``, ``Café``) would lose them, and two such names
    could share a folder: its slug adds the first 8 hex digits of the name's sha256
    (``suite-3f2a9c1d``). Two names that still give one folder are refused when the second
    writes (bench.store.Suite.check_owner)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "suite"
    if name.isascii():
        return slug
    return f"{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def read_name(path: str | Path) -> str:
    """A suite file's ``name`` alone (nothing else is validated, nothing is built)."""
    file = str(path)
    raw = check_mapping(read_raw(path), file)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SuiteError(file, "name", f"expected a non-empty string, found {found(name)}")
    return name

