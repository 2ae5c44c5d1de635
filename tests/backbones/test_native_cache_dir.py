"""Where the compiled batch norm is cached when the home folder cannot be written."""
from __future__ import annotations

import os
import stat

from bench.backbones import native


def test_a_read_only_home_shares_one_private_folder_instead_of_one_per_process(
        tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/dev/null/home")  # cannot be created, even by root
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path))
    first, second = native._cache_dir(), native._cache_dir()
    assert first == second == tmp_path / f"boostnet-bench-{os.getuid()}"
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_a_shared_folder_that_is_not_private_is_not_used(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/dev/null/home")
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"boostnet-bench-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # another user could put a library there
    chosen = native._cache_dir()
    assert chosen != planted and chosen.parent == tmp_path
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o700
