"""docs/suite-schema.md is what the schema's models say: every key of a suite file, what it
takes, its default and its description. ``python tests/config/test_reference.py`` rewrites
the page from the models."""
import json
import types
import typing
from pathlib import Path

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from bench.config.schema import SuiteConfig
from bench.config.types import Config, Known, OneOf, thaw

DOC = Path(__file__).resolve().parents[2] / "docs" / "suite-schema.md"
HEADER = """\
# Suite files: every key

Written from the schema's models (`bench/config/schema.py`) by
`python tests/config/test_reference.py`; that test keeps the two in sync.
A key set to `null` takes its default. Unknown keys, values of the wrong type and values
out of bounds are errors that name the file, the key path and what was expected. Integers
take no `1.0` and numbers no `true`; `1` and `1.0` are the same number.
`name (step)` marks a key only that variant takes.

| key | takes | default | meaning |
|---|---|---|---|
"""
BOUNDS = {Ge: ">=", Gt: ">", Le: "<=", Lt: "<"}
KINDS = {int: "integer", float: "number", bool: "true or false", str: "string"}


def takes(tp, metadata=()) -> str:
    """What a field of type ``tp`` takes, in words."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return takes(args[0], [*args[1:], *metadata])
    if origin in (typing.Union, types.UnionType):
        return takes(next(a for a in args if a is not type(None)), metadata) + ", or null"
    metadata = [n for m in metadata for n in (m.metadata if isinstance(m, FieldInfo) else [m])]
    bounds = " and".join(f" {op} {getattr(m, type(m).__name__.lower())}" for m in metadata
                         for kind, op in BOUNDS.items() if isinstance(m, kind))
    for m in metadata:
        if isinstance(m, Known):
            return (f"a registered {m.what}" if callable(m.choices)
                    else " \\| ".join(f"`{c}`" for c in m.choices))
        if isinstance(m, OneOf):
            return "mapping; `name`: " + " \\| ".join(f"`{n}`" for n in m.models)
    if origin is tuple:
        return f"list of {takes(args[0])}"
    return KINDS.get(tp, "mapping") + bounds


def sections(tp) -> list[tuple[str, type[Config], str]]:
    """The models inside a field's type: (key suffix, model, tag); a variant's rows (tagged
    with its name) hold only the keys its base does not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, Config):
        return [("", tp, "")]
    if origin is typing.Annotated:
        variants = [(n, m) for v in args[1:] if isinstance(v, OneOf) for n, m in v.models.items()
                    if m is not args[0]]
        return sections(args[0]) + [("", m, f" ({n})") for n, m in variants]
    if origin is tuple:
        return [("[]", model, tag) for _, model, tag in sections(args[0])]
    return [s for a in args for s in sections(a)]


def rows(model: type[Config], prefix: str = "", tag: str = "") -> list[str]:
    skip = model.__base__.model_fields if tag else ()
    out = []
    for name, field in model.model_fields.items():
        if name in model.DERIVED or name in skip:
            continue
        default = "required" if field.is_required() else "" if field.default_factory else \
            f"`{json.dumps(thaw(field.default))}`"
        out.append(f"| `{prefix}{name}`{tag} | {takes(field.annotation, field.metadata)} | "
                   f"{default} | {field.description} |")
        full = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata \
            else field.annotation
        for suffix, sub, sub_tag in sections(full):
            out += rows(sub, f"{prefix}{name}{suffix}.", sub_tag)
    return out


def page() -> str:
    return HEADER + "\n".join(rows(SuiteConfig)) + "\n"


def test_the_page_is_in_sync_with_the_models():
    assert DOC.read_text() == page(), (
        "docs/suite-schema.md is out of date: python tests/config/test_reference.py")


def test_every_key_has_a_row_with_what_it_takes_and_its_default():
    text = page()
    for key in SuiteConfig.keys():
        assert f"| `{key}` |" in text
    assert "| `training.epochs` | integer >= 1 | `300` | epochs per run |" in text
    assert "| `budgets.fractions` | list of number > 0 and <= 1, or null | `null` |" in text
    assert "| `training.schedule.milestones` (step) | list of number > 0 and < 1 |" in text
    assert "| `tune.pruner.percentile` (percentile) |" in text
    assert "| `methods[].name` | a registered method | required |" in text
    assert "`methods[].reference`" not in text  # derived keys are not for suites


if __name__ == "__main__":
    DOC.write_text(page())
