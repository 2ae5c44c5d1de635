"""The Makefile's install step, run against a stand-in Python so that nothing is
downloaded: the first `make install` creates the venv and installs the torch pair and the
project, the second does nothing, and a changed pyproject.toml installs again. The copy
has no .git (a source archive)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Stands in for python3: `-m venv DIR` makes DIR/bin/python (this same script); any other
# call is logged, one line per call.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && echo "venv $3" >> "$CALLS"; exit 0
fi
echo "$*" >> "$CALLS"
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def tree(tmp_path):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    fake = tmp_path / "fake-python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return tmp_path


def make(tree, *targets):
    env = {**os.environ, "CALLS": str(tree / "calls.log")}
    proc = subprocess.run(["make", f"PYTHON={tree / 'fake-python3'}", *targets], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def calls(tree):
    log = tree / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_install_once_then_nothing_then_again_when_pyproject_changes(tree):
    assert not (tree / ".git").exists()
    make(tree, "install")
    assert calls(tree) == ["venv .venv",
                           "-m pip install torch==2.14.1 torchvision==0.29.1",
                           "-m pip install -e .[test,deploy]"]
    assert len(list((tree / ".venv").glob(".installed-*"))) == 1
    make(tree, "install")
    assert calls(tree) == []  # idempotent: the stamp says it is done
    with open(tree / "pyproject.toml", "a") as f:
        f.write("\n# a new dependency\n")
    make(tree, "install")
    assert calls(tree) == ["-m pip install torch==2.14.1 torchvision==0.29.1",
                           "-m pip install -e .[test,deploy]"]
    assert len(list((tree / ".venv").glob(".installed-*"))) == 1  # the old stamp is gone


def test_quickstart_and_test_run_the_readme_commands(tree):
    out = make(tree, "quickstart")
    assert calls(tree)[-1] == "-m bench run suites/quickstart.yaml"
    assert f"{tree}/reports/index.html" in out
    make(tree, "-o", "system-packages", "test")  # never apt-get from a test
    assert calls(tree)[-1] == "-m pytest -n 2"
    readme = (ROOT / "README.md").read_text()
    assert "make quickstart" in readme and "make test" in readme
    assert "python -m pytest -n 2" in readme


def test_system_packages_step_uses_no_install_recommends():
    text = (ROOT / "Makefile").read_text()
    assert "apt-get install -y -qq --no-install-recommends $$missing" in text
    assert 'missing=" chromium"' in text and "dataset-fashion-mnist" in text
    assert 'missing="$$missing postgresql"' in text  # the shared-study test's server
    assert "gcc" not in text and "libc6-dev" not in text  # nothing is compiled on the machine
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _bin_with(tmp_path: Path, scripts: dict[str, str]) -> Path:
    """A PATH folder with the few tools the system-packages step needs, and ``scripts``
    (name -> shell body) standing in for others; chromium and apt-get are absent unless
    given."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("ls", "id"):
        os.symlink(shutil.which(tool), folder / tool)
    for name, body in scripts.items():
        (folder / name).unlink(missing_ok=True)
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def system_packages(tree, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("make"), "system-packages"], cwd=tree,
                          env={**os.environ, "PATH": str(path)}, capture_output=True,
                          text=True, timeout=60)


def test_system_packages_without_apt_get_says_what_will_skip(tree):
    done = system_packages(tree, _bin_with(tree, {}))  # no apt-get on PATH
    assert done.returncode == 0, done.stderr
    assert "missing chromium" in done.stdout and "those tests will skip" in done.stdout


def test_system_packages_as_a_user_does_not_call_apt_get(tree):
    log = tree / "apt.log"
    done = system_packages(tree, _bin_with(tree, {"id": "echo 1000",
                                                  "apt-get": f'echo "$*" >> {log}'}))
    assert done.returncode == 0, done.stderr
    assert "no apt-get as root" in done.stdout and not log.exists()


def test_a_failed_apt_get_install_leaves_the_tests_to_skip(tree):
    log = tree / "apt.log"  # a stand-in apt-get, as root, that fails like one offline
    done = system_packages(tree, _bin_with(tree, {"id": "echo 0",
                                                  "apt-get": f'echo "$*" >> {log}; exit 100'}))
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["update -qq"]
    assert "could not install chromium" in done.stdout and "will skip" in done.stdout
