"""bench.fingerprint: a hash of the harness's code that works without git."""
from __future__ import annotations

import shutil
from pathlib import Path

from bench import fingerprint
from bench.evaluate import paper

ROOT = Path(__file__).resolve().parents[1]


def copy_code(dest: Path) -> Path:
    for pkg in fingerprint.PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_any_edit_changes_it_and_nothing_else_does(tmp_path):
    root = copy_code(tmp_path / "code")
    before = fingerprint.fingerprint(root=root)
    assert before == fingerprint.fingerprint(root=root)  # deterministic
    assert (before["git_commit"], before["git_dirty"]) == (None, None)  # no git here
    assert before["short"] == before["sha256"][:10] and len(before["sha256"]) == 64
    assert before["files"] == len(fingerprint.code_files(root)) > 40
    (root / "methods" / "__pycache__").mkdir(exist_ok=True)
    (root / "methods" / "__pycache__" / "x.py").write_text("ignored")
    (root / "bench" / "notes.txt").write_text("not code")
    assert fingerprint.fingerprint(root=root)["sha256"] == before["sha256"]
    joint = root / "methods" / "joint.py"
    joint.write_text(joint.read_text() + "# one more line\n")
    assert fingerprint.fingerprint(root=root)["sha256"] != before["sha256"]


def test_a_renamed_file_changes_it(tmp_path):
    root = copy_code(tmp_path / "code")
    before = fingerprint.fingerprint(root=root)["sha256"]
    (root / "methods" / "joint.py").rename(root / "methods" / "joint2.py")
    assert fingerprint.fingerprint(root=root)["sha256"] != before


def test_plugin_files_count_by_content_not_place(tmp_path):
    a, b = tmp_path / "a" / "toy.py", tmp_path / "b" / "toy.py"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("X = 1\n")
    base = fingerprint.fingerprint(git=False)["sha256"]
    with_a = fingerprint.fingerprint([str(a)], git=False)
    assert with_a["sha256"] != base and with_a["files"] == fingerprint.fingerprint(
        git=False)["files"] + 1
    assert fingerprint.fingerprint([str(b)], git=False)["sha256"] == with_a["sha256"]
    b.write_text("X = 2\n")
    assert fingerprint.fingerprint([str(b)], git=False)["sha256"] != with_a["sha256"]
    b.unlink()  # a plugin that is gone (a report of moved results): other code, no error
    gone = fingerprint.fingerprint([str(b)], git=False)["sha256"]
    assert gone not in (base, with_a["sha256"])
    # a module plugin contributes its file
    # (the installed module's file: under tox the package is a wheel in site-packages)
    assert fingerprint.plugin_files(["bench.evaluate.paper"]) == [Path(paper.__file__)]
    assert fingerprint.plugin_files(["no.such.module"]) == []


def test_short_says_unknown_without_a_fingerprint():
    assert fingerprint.short(None) == "unknown"
    assert fingerprint.short("abcdef0123456789") == "abcdef0123"
