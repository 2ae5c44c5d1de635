"""The docs match the tree: docs/architecture.md's module table names every package, module
and data folder of bench/ and methods/ with its layer from pyproject.toml's contract, and
names nothing that is gone; every relative link in README.md and docs/*.md, and every
docs/*.md named in the code, reaches a file (and a heading, for #anchors); the README stays
a first screen."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: tomli where installed
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PACKAGES = ("bench", "methods")
# layer names of the architecture table, in the order of the contract's layers (top first)
LAYER_NAMES = ("commands", "report | executors", "pipeline", "store", "config", "core")


def table_rows(text: str) -> list[list[str]]:
    """The cells of the module table (the one whose header is `| layer | path | job |`)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| layer | path |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def named_paths(cell: str) -> list[str]:
    """The paths of a path cell: `a/b/c.py`, `d.py` -> a/b/c.py, a/b/d.py (a bare name lies
    in the folder of the path before it)."""
    paths, folder = [], ""
    for token in re.findall(r"`([^`]+)`", cell):
        if "/" in token.rstrip("/"):
            path = token
        elif token.endswith("/") and not folder:
            path = token  # a top-level folder: bench/, methods/
        else:
            path = folder + token
        folder = path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"
        paths.append(path)
    return paths


def table(text: str | None = None) -> dict[str, str]:
    """path named in the table -> its layer cell."""
    named = {}
    for row in table_rows(ARCHITECTURE.read_text() if text is None else text):
        assert len(row) == 3, f"docs/architecture.md: a module row needs 3 cells: {row}"
        for path in named_paths(row[1]):
            assert path not in named, f"docs/architecture.md names {path} twice"
            named[path] = row[0]
    return named


def tree(root: Path = ROOT) -> set[str]:
    """What the table must name: every package and data folder (as `dir/`), every module
    but `__init__.py`, and every other file that lies in a package (a C source)."""
    found = set()
    for package in PACKAGES:
        for path in (root / package).rglob("*"):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            if path.is_dir():
                found.add(f"{rel.as_posix()}/")
            elif path.name != "__init__.py" and (path.parent / "__init__.py").exists():
                found.add(rel.as_posix())
        found.add(f"{package}/")
    return found


def contract_layers() -> dict[str, str]:
    """bench's top-level module -> its layer name, from pyproject.toml's layers contract."""
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs Python 3.11 or tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"]
                    if c["id"] == "layers")
    assert len(contract["layers"]) == len(LAYER_NAMES), "the contract's layers changed"
    layers = {}
    for name, layer in zip(LAYER_NAMES, contract["layers"]):
        for module in re.split(r"[:|]", layer):
            layers[module.strip()] = module.strip() if "|" in name else name
    return layers


def expected_layer(path: str, layers: dict[str, str]) -> str | None:
    if path.startswith("methods/"):
        return "core"  # the methods-are-core contract
    parts = path.split("/")
    if len(parts) < 2 or not parts[1]:
        return None  # bench/ itself
    top = parts[1].removesuffix(".py")
    if top in ("templates", "assets"):
        return "report"  # data folders the report reads
    return layers.get(top)


def missing_rows(root: Path = ROOT, text: str | None = None) -> list[str]:
    return sorted(tree(root) - set(table(text)))


def gone_rows(root: Path = ROOT, text: str | None = None) -> list[str]:
    return sorted(p for p in table(text) if not (root / p).exists())


def test_the_module_table_names_every_module_of_the_tree():
    missing = missing_rows()
    assert not missing, ("docs/architecture.md's module table lacks a row for: "
                         + ", ".join(missing) + " (add one per module, with its layer)")


def test_every_path_the_module_table_names_exists():
    gone = gone_rows()
    assert not gone, ("docs/architecture.md's module table names paths that do not exist: "
                      + ", ".join(gone) + " (remove or rename their rows)")


def test_the_module_table_gives_each_module_its_layer():
    layers = contract_layers()
    wrong = []
    for path, layer in table().items():
        expected = expected_layer(path, layers)
        if expected is None and path != "bench/":
            wrong.append(f"{path}: not placed in pyproject.toml's layers contract")
        elif expected is not None and layer != expected:
            wrong.append(f"{path}: '{layer}', the contract says '{expected}'")
    assert not wrong, "docs/architecture.md's layer column: " + "; ".join(wrong)


def test_the_table_check_catches_a_missing_and_a_gone_row(tmp_path):
    for name in ("bench/__init__.py", "bench/cli.py", "bench/vit/__init__.py",
                 "bench/vit/blocks.py", "bench/vit/kernel.c", "bench/templates/a.html",
                 "methods/__init__.py", "methods/lib/__init__.py", "methods/lib/new.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    text = ("| layer | path | job |\n|---|---|---|\n| — | `bench/` | x |\n"
            "| commands | `bench/cli.py` | x |\n| core | `bench/vit/`, `blocks.py` | x |\n"
            "| core | `bench/old.py` | x |\n| core | `methods/`, `lib/` | x |\n")
    assert missing_rows(tmp_path, text) == ["bench/templates/", "bench/vit/kernel.c",
                                            "methods/lib/new.py"]
    assert gone_rows(tmp_path, text) == ["bench/old.py"]
    assert named_paths("`methods/joint.py`, `kd.py`") == ["methods/joint.py", "methods/kd.py"]
    assert len(table_rows(ARCHITECTURE.read_text())) > 50
    layers = contract_layers()
    assert layers["cli"] == "commands" and layers["report"] == "report"
    assert layers["evaluate"] == "core" and layers["store"] == "store"


# -- links -----------------------------------------------------------------------------

def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"[a-z]+:", t)]


def test_every_relative_link_reaches_a_file_and_heading():
    broken = []
    for page in pages():
        for target in links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_sees_anchors_and_links():
    assert slug("Run ids and code fingerprints") == "run-ids-and-code-fingerprints"
    assert slug("Add a `tune:` section, (really)") == "add-a-tune-section-really"
    assert "run-ids-and-code-fingerprints" in anchors(ROOT / "docs" / "running.md")
    assert any(t.startswith("docs/") for t in links(ROOT / "README.md"))


def test_every_docs_page_the_project_names_exists():
    """A page renamed or removed leaves no pointer behind in code, suites or docs."""
    files = [*pages(), ROOT / "Makefile", ROOT / "tox.ini", ROOT / "pyproject.toml"]
    for folder in ("bench", "methods", "tests", "suites", "scripts", "docs/examples"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".yaml", ".sh")]
    missing = []
    for path in files:
        for name in re.findall(r"docs/([\w.-]+\.md)", path.read_text(errors="replace")):
            if not (ROOT / "docs" / name).is_file():
                missing.append(f"{path.relative_to(ROOT)}: docs/{name}")
    assert not missing, "pointers to docs pages that do not exist:\n" + "\n".join(missing)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    unlisted = [p.name for p in (ROOT / "docs").glob("*.md") if f"(docs/{p.name})" not in readme]
    assert not unlisted, "README's Documentation section lacks: " + ", ".join(unlisted)


def test_the_readme_is_a_first_screen():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines (at most 250)"
    assert not any(line.startswith("## Changelog") for line in lines)
