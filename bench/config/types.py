"""The value types of the suite schema, the base of its models and its error messages.

Integers take no floats or booleans; numbers take no booleans and become floats, so that
1 and 1.0 are one configuration; bounds are pydantic's (``Key(300, "...", ge=1)``). Inside
a config, mappings are read-only and lists are tuples. A validator reports a problem with
:func:`fail` (``at``: the key path below the value it validates); :func:`suite_error` turns
pydantic's first error into a SuiteError naming the file, key path, expected and found.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Callable, ClassVar, Mapping, NoReturn

from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict,
                      Field, PlainValidator, Strict, StrictBool, StringConstraints,
                      ValidationError, model_validator)
from pydantic_core import PydanticCustomError, core_schema

from bench.config.checker import found, join, short
from bench.errors import SuiteError

Int = Annotated[int, Strict()]
Number = Annotated[float, Strict(), AllowInfNan(False)]
Flag = StrictBool
Text = Annotated[str, Strict(), StringConstraints(min_length=1)]
AnyText = Annotated[str, Strict()]


def Key(default: Any = ..., about: str = "", **bounds) -> Any:
    """A key's default (a Config class: its defaults), bounds and one-line description."""
    if isinstance(default, type):
        return Field(default_factory=default, description=about, **bounds)
    return Field(default, description=about, **bounds)


def fail(message: str, at: str | int = "") -> NoReturn:
    raise PydanticCustomError("suite", "{message}", {"message": message, "at": at})


def expect(expected: str, value: Any, at: str | int = "") -> NoReturn:
    fail(f"expected {expected}, found {found(value)}", at)


def Matching(pattern: str, says: str):
    """A string that matches ``pattern``; errors say it expects ``says``."""
    def check(value: str) -> str:
        return value if re.fullmatch(pattern, value) else expect(says, value)
    return Annotated[AnyText, AfterValidator(check)]


@dataclass(frozen=True)
class Known:
    """A name out of ``choices``: fixed, or a registry's (a function, asked when a suite is
    validated, after its plugins registered theirs)."""
    what: str
    choices: tuple[str, ...] | Callable[[], list[str]]

    def names(self) -> list[str]:
        return list(self.choices() if callable(self.choices) else self.choices)

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_plain_validator_function(self.check)

    def check(self, value: Any, at: str = "") -> str:
        if not isinstance(value, str) or value not in self.names():
            fail(f"unknown {self.what} {short(value)}; known: {', '.join(self.names())}", at)
        return value


def Choice(what: str, choices: tuple[str, ...] | Callable[[], list[str]]):
    return Annotated[str, Known(what, choices)]


@dataclass(frozen=True)
class FlagOrWord(Known):
    """true, false or one of the words in ``choices`` after ``true`` and ``false`` (as the
    schema page shows them): ``FlagOrWord("setting", ("true", "false", "auto"))``."""

    def check(self, value: Any, at: str = "") -> bool | str:
        words = [c for c in self.names() if c not in ("true", "false")]
        if isinstance(value, bool) or (isinstance(value, str) and value in words):
            return value
        expect(f"true, false or {' or '.join(words)}", value, at)


def _non_empty(value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or not value:
        expect("a non-empty list", value)
    return value


def _distinct(items: tuple) -> tuple:
    keys = [json.dumps(thaw(item), sort_keys=True) for item in items]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            fail(f"{thaw(items[i])!r} is listed twice", i)
    return items


def Items(item: Any, *, distinct: bool = False, **bounds):
    """A non-empty list (a tuple once validated) of ``item``s, each within ``bounds``."""
    item = Annotated[item, Field(**bounds)] if bounds else item
    return Annotated[(tuple[item, ...], BeforeValidator(_non_empty),
                      *([AfterValidator(_distinct)] if distinct else []))]


def plain(value: Any, at: str = "") -> Any:
    """Free-form data (options, overrides) as JSON data: string keys, finite numbers."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                expect("a string key", key, join(at, str(key)))
        return {k: plain(v, join(at, k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, join(at, i)) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        expect("a finite number", value, at)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    expect("a string, number, boolean, null, list or mapping", value, at)


def Free(says: str = "a mapping"):
    """A mapping of free-form JSON data, read-only once validated."""
    def check(value: Any) -> Mapping[str, Any]:
        return freeze(plain(value)) if isinstance(value, Mapping) else expect(says, value)
    return Annotated[Mapping[str, Any], PlainValidator(check)]


JSON = Annotated[Any, PlainValidator(lambda value: freeze(plain(value)))]


@dataclass(frozen=True, eq=False)
class OneOf:
    """A section whose ``name`` picks its model; a bare name means ``{name: NAME}``."""
    what: str
    models: Mapping[str, type[Config]]
    default: str

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_plain_validator_function(self.check)

    def check(self, value: Any) -> Config:
        if isinstance(value, Config):
            return value
        value = {"name": value} if isinstance(value, str) else value or {}
        if not isinstance(value, Mapping):
            expect("a mapping", value)
        name = Known(self.what, tuple(self.models)).check(value.get("name") or self.default,
                                                         "name")
        return self.models[name].model_validate({**value, "name": name})


def freeze(value: Any) -> Any:
    """Plain data made read-only: dicts -> MappingProxyType, lists -> tuples."""
    if isinstance(value, (dict, MappingProxyType)):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Configs and frozen data back to plain JSON data (dicts, lists)."""
    if isinstance(value, Config):
        return value.as_dict()
    if isinstance(value, (dict, MappingProxyType)):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


class Config(BaseModel):
    """A section of the suite: frozen, unknown keys refused, a null value is the default."""
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    DERIVED: ClassVar[tuple[str, ...]] = ()  # filled by validation, never given
    OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ()  # left out of as_dict when null

    @classmethod
    def keys(cls) -> list[str]:
        """The keys a suite may give."""
        return [k for k in cls.model_fields if k not in cls.DERIVED]

    @classmethod
    def given(cls, value: Any) -> Any:
        """The section as given, a shorthand (``executor: ray``) spelled out."""
        return value

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        value = {} if value is None else cls.given(value)
        if not isinstance(value, Mapping):
            expect("a mapping", value)
        for key in value:
            if key not in cls.keys():
                fail(f"unknown key {key!r}; allowed: {', '.join(cls.keys())}", str(key))
        return {k: v for k, v in value.items()
                if v is not None or cls.model_fields[k].is_required()}

    def as_dict(self) -> dict:
        """Plain JSON data in field order: what suite.json and config.json hold."""
        return {k: thaw(getattr(self, k)) for k in type(self).model_fields
                if not (k in self.OMIT_IF_NONE and getattr(self, k) is None)}

    def replace(self, **changes) -> Config:
        return self.model_copy(update=changes)

    def derive(self, **values) -> Config:
        """Fill keys that validation derives, from an after-validator (frozen once done)."""
        for key, value in values.items():
            object.__setattr__(self, key, value)
        return self


KINDS = {"int_type": "an integer", "bool_type": "true or false", "float_type": "a finite "
         "number", "finite_number": "a finite number", "string_type": "a string",
         "string_too_short": "a non-empty string"}
BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
          "less_than_equal": "<="}


def problem(error: dict) -> tuple[str, str]:
    """(key path, message) of one of pydantic's errors."""
    path, kind, ctx = "", error["type"], error.get("ctx", {})
    for part in error["loc"]:
        path = join(path, part)
    if kind == "suite":
        return join(path, ctx["at"]), ctx["message"]
    if kind == "missing":
        return path, "required key is missing"
    if kind in BOUNDS:  # float fields have float bounds
        (bound,) = ctx.values()
        expected = (f"a number {BOUNDS[kind]} {bound:g}" if isinstance(bound, float)
                    else f"an integer {BOUNDS[kind]} {bound}")
    else:
        expected = KINDS.get(kind, error["msg"])
    return path, f"expected {expected}, found {found(error['input'])}"


def suite_error(file: str, err: ValidationError, under: str = "") -> SuiteError:
    """The first problem pydantic found, as a SuiteError (``under``: the key validated)."""
    path, message = problem(err.errors(include_url=False)[0])
    return SuiteError(file, join(under, path), message)
