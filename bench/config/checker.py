"""How errors show a key path and a value, and the Checker that raises SuiteError for the
checks that run outside the schema's models (plugins, costs, a dry run on each backbone)."""
from __future__ import annotations

import re
from typing import Any, Callable, NoReturn

from bench.errors import SuiteError


def found(value: Any) -> str:
    """How an error message shows the value it found."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return f"a mapping {short(value)}"
    if isinstance(value, list):
        return f"a list {short(value)}"
    return f"{short(value)} ({type(value).__name__})"


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def join(path: str, key: str | int) -> str:
    """``methods`` + 2 -> ``methods[2]``; ``training`` + ``epochs`` -> ``training.epochs``;
    ``methods`` + ``[2].label`` -> ``methods[2].label``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not path or not key or key.startswith("["):
        return path + key
    return f"{path}.{key}"


def named_key(path: str, mapping: dict, message: str) -> str:
    """The key of ``mapping`` an error message is about (the first it names), else ``path``."""
    named = [k for k in mapping if re.search(rf"\b{re.escape(k)}\b", message)]
    return join(path, named[0]) if named else path


class Checker:
    """Fails with a SuiteError naming ``file``."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, message: str) -> NoReturn:
        raise SuiteError(self.file, path, message)

    def expect(self, path: str, expected: str, value: Any) -> NoReturn:
        self.fail(path, f"expected {expected}, found {found(value)}")

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            self.expect(path, "a non-empty string", value)
        return value

    def items(self, value: Any, path: str, check: Callable[[Any, str], Any]) -> list:
        """A non-empty list, each item checked by ``check(item, item_path)``."""
        if not isinstance(value, list) or not value:
            self.expect(path, "a non-empty list", value)
        return [check(v, join(path, i)) for i, v in enumerate(value)]
