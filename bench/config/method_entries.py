"""Validation of the suite's methods: options against what each method declares, ``tuned``
against its search space, and a dry run of the method on every backbone of the suite."""
from __future__ import annotations

from typing import Any

import torch

import methods
from bench.config.checker import Checker, join, named_key
from bench.config.costs import BackboneInfo
from bench.config import sections
from bench.config.defaults import METHOD_ENTRY, TUNED
from bench.config.schema import BackboneEntry, MethodEntry, freeze, thaw


def method_entry(c: Checker, e: dict, path: str) -> MethodEntry:
    """A method entry (name and label already checked) with every option filled: given
    values checked by the method's declared kinds, defaults for the rest."""
    opath = join(path, "options")
    declared = {o.name: o for o in methods.options_of(e["name"])}
    c.mapping(e["options"], opath, {k: None for k in declared})  # unknown options
    given = c.plain(e["options"], opath)
    space = methods.search_space(e["name"])
    options = {}
    for key, option in declared.items():
        if key not in given:
            options[key] = option.check(option.default)
        elif given[key] == TUNED:
            if key not in space:
                c.fail(join(opath, key), f"'tuned' is only for the options in method "
                                         f"{e['name']!r}'s search space: "
                                         f"{', '.join(space) or 'it has none'}")
            options[key] = TUNED
        else:
            options[key] = _checked(c, option, given[key], join(opath, key))
    reference = options == methods.defaults(e["name"])
    return MethodEntry(e["name"], e["label"], freeze(options), reference)


def _checked(c: Checker, option: methods.Option, value: Any, path: str) -> Any:
    try:
        return option.check(value)
    except methods.OptionError as err:
        where = path if err.index is None else join(path, err.index)
        c.expect(where, err.expected, err.value)


def create(c: Checker, m: MethodEntry, path: str) -> methods.Method:
    """The method, with its declared default standing in for each ``tuned`` option."""
    options = thaw(m.options)
    for key in m.tuned:
        options[key] = methods.defaults(m.name)[key]
    try:
        return methods.create(m.name, **options)
    except (TypeError, ValueError) as err:
        c.fail(_option_path(path, m, err), f"method {m.name!r}: {err}")


def _option_path(path: str, m: MethodEntry, err: Exception) -> str:
    option = getattr(err, "option", None)
    if option in m.options:
        return join(join(path, "options"), option)
    return named_key(join(path, "options"), dict(m.options), str(err))


def check_on(c: Checker, m: MethodEntry, path: str, info: BackboneInfo, b: BackboneEntry,
             num_classes: int, epochs: int) -> list[methods.Stage]:
    """Run the method on dummy logits of the backbone's exits: per-exit options (lengths of
    temperature and loss weight lists), gradient rescaling support, and one epoch at least
    per training stage. Returns the stages."""
    method = create(c, m, path)
    on = f"on backbone {b.label!r} ({info.num_exits} exits)"
    attrs = {"grad_rescale": False} if info.has_grad_rescale else {}
    stand_in = type(info.class_name, (), attrs)()  # prepare() only looks at grad_rescale
    try:
        outs = [torch.zeros(2, num_classes) for _ in range(info.num_exits)]
        method.combine(outs)
        method.loss(outs, torch.zeros(2, dtype=torch.long))
        method.prepare(stand_in)
        stages = method.stages(info.num_exits)
    except (TypeError, ValueError) as err:
        c.fail(_option_path(path, m, err), f"method {m.label!r} {on}: {err}")
    try:
        methods.split_epochs(epochs, stages)
    except ValueError as err:
        c.fail("training.epochs", f"method {m.label!r} {on}: {err}")
    return stages


def resolve_methods(c: Checker, value: Any) -> list[MethodEntry]:
    """The suite's ``methods`` list: names known to the registry, labels unique, options
    checked and filled, reference variants and the paper's curves marked."""
    raw = sections.entries(c, value, "methods", methods.names(), "method", METHOD_ENTRY)
    return mark_paper_curves([method_entry(c, e, f"methods[{i}]") for i, e in enumerate(raw)])


def mark_paper_curves(entries: list[MethodEntry]) -> list[MethodEntry]:
    """The first reference entry of each method that stands for one of the paper's curves
    says which (bench.evaluate.paper); the report puts the paper's numbers beside it."""
    out, seen = [], set()
    for m in entries:
        curve = methods.paper_curve(m.name)
        if m.reference and curve and curve not in seen:
            seen.add(curve)
            m = m.replace(paper=curve)
        out.append(m)
    return out
