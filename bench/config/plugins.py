"""``plugins:``: Python files or modules a suite imports before it is validated, so that the
methods, backbones and data sets they register (``methods.register``,
``bench.backbones.register``, ``bench.data.register``) can be named in the suite.

A file is imported once per process under a name derived from its absolute path, so that
loading a suite twice does not register its methods twice; its bytes are part of the code
fingerprint of the suite's runs (bench.fingerprint).

A plugin cannot end the command: whatever its import raises (also ``SystemExit``, as a
``sys.exit()`` or an argument parser at import raise; only Ctrl-C goes through) is a suite
error naming the plugin, and what it prints while being imported is held back and quoted
in that error (shown as printed where the import succeeds).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
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
        out, err_out = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err_out):
                if plugin.endswith(".py"):
                    _import_file(Path(plugin))
                else:
                    importlib.import_module(plugin)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # the plugin's own code failed: say which and how
            c.fail(join("plugins", i), f"cannot import plugin {plugin!r}: {_why(err)}"
                                       f"{_quoted(err_out.getvalue() + out.getvalue())}")
        sys.stdout.write(out.getvalue())
        sys.stderr.write(err_out.getvalue())


def _why(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"it called sys.exit({err.code!r}) while being imported"
    return f"{type(err).__name__}: {err}"


def _quoted(text: str) -> str:
    """The first line a failed plugin printed, as a clause of the error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0] if len(lines[0]) <= 160 else lines[0][:157] + "..."
    return f" (it printed: {first!r}{' ...' if len(lines) > 1 else ''})"


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

