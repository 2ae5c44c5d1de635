"""The layers import one way (docs/architecture.md): import-linter's contracts in
pyproject.toml hold, a violation is caught, and project modules are imported at module
level only."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods")
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")

pytest.importorskip("importlinter")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_import_contracts_hold():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path):
    for name in (*PACKAGES, "pyproject.toml"):
        src = ROOT / name
        copy = shutil.copytree if src.is_dir() else shutil.copy
        copy(src, tmp_path / name)
    store_files = tmp_path / "bench" / "store" / "files.py"
    store_files.write_text(store_files.read_text() + "\nfrom bench.pipeline import runner\n")
    out = lint(tmp_path)
    assert out.returncode == 1
    assert "BROKEN" in out.stdout and "bench.store.files -> bench.pipeline.runner" in out.stdout


def function_level_imports(path: Path) -> list[str]:
    """Imports of project modules inside functions or classes (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        body_imports = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body_imports = [n for n in ast.walk(node) if isinstance(n, (ast.Import,
                                                                         ast.ImportFrom))]
        for imp in body_imports:
            names = [a.name for a in imp.names] if isinstance(imp, ast.Import) else \
                [imp.module or ""]
            if (isinstance(imp, ast.ImportFrom) and imp.level) or \
                    any(n.split(".")[0] in PACKAGES for n in names):
                found.append(f"{path.relative_to(ROOT)}:{imp.lineno}")
    return sorted(set(found))


def test_project_modules_are_imported_at_module_level_only():
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    assert len(files) > 40
    assert [hit for f in files for hit in function_level_imports(f)] == []
