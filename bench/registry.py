"""One registry implementation for every kind of named plug-in: methods, backbones, data
sets, exit criteria and exit combiners (in the style of fvcore's ``Registry`` and timm's
``register_model``).

    BACKBONES = Registry("backbone")

    @BACKBONES.register("msdnet10_cifar")
    def msdnet10_cifar(num_classes=100, **overrides): ...

    BACKBONES.names()            # sorted
    BACKBONES.get("msdnet10")    # UnknownName: unknown backbone 'msdnet10'; registered: ...

A name is registered once (a second registration is an error, also from a plugin); an
unknown name is an error that lists the registered ones.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no registry entry has. A KeyError (a lookup failed) and a ValueError (a bad
    value was given), so callers that catch either keep working; ``str`` is the plain
    message (KeyError's would be quoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # how messages name an entry: "backbone", "exit criterion"
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} needs a non-empty name, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str, make: Callable[[Any], T] | None = None):
        """Decorator: registers the decorated object under ``name`` (``make(obj)`` where
        the registry keeps a record built from it) and returns the object unchanged."""

        def wrap(obj):
            self.add(name, make(obj) if make is not None else obj)
            return obj

        return wrap

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a suite
            raise UnknownName(f"unknown {self.what} {name!r}; registered: "
                              f"{', '.join(self.names()) or 'none'}") from None

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
