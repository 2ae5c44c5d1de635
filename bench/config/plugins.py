"""``plugins:``: Python files or modules a suite imports before it is validated, so that the
methods, backbones and data sets they register (``methods.register``,
``bench.backbones.register``, ``bench.data.register``) can be named in the suite.

A file is imported once per process under a name derived from its absolute path, so that
loading a suite twice does not register its methods twice; its bytes are part of the code
fingerprint of the suite's runs (bench.fingerprint).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from bench.config.checker import Checker, join


def resolve(c: Checker, value: Any, suite_dir: Path) -> tuple[str, ...]:
    """The plugin list with files made absolute (relative paths are against the suite
    file's folder); module names stay as given."""
    if value is None or value == []:
        return ()
    out = []
    for i, item in enumerate(c.items(value, "plugins", lambda v, p: c.string(v, p))):
        if item.endswith(".py"):
            path = Path(item).expanduser()
            path = (path if path.is_absolute() else suite_dir / path).resolve()
            if not path.is_file():
                c.fail(join("plugins", i), f"no such plugin file {str(path)!r}")
            out.append(str(path))
        else:
            out.append(item)
    return tuple(out)


def load(c: Checker, plugins: tuple[str, ...]) -> None:
    """Import every plugin (once per process); an import error names the plugin."""
    for i, plugin in enumerate(plugins):
        try:
            if plugin.endswith(".py"):
                _import_file(Path(plugin))
            else:
                importlib.import_module(plugin)
        except Exception as err:  # the plugin's own code failed: say which and how
            c.fail(join("plugins", i), f"cannot import plugin {plugin!r}: "
                                       f"{type(err).__name__}: {err}")


def module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return f"bench_plugin_{path.stem}_{digest}"


def _import_file(path: Path) -> None:
    name = module_name(path)
    if name in sys.modules:
        return  # imported before in this process: its registrations stand
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise

