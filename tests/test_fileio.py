"""bench.fileio: atomic writes that honour the umask and flush the folder, and readers that
say what is wrong with a file."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from bench import fileio
from bench.fileio import UnreadableFile


@pytest.fixture
def umask():
    """Set the umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_allows(tmp_path, umask, mask, mode):
    umask(mask)
    assert fileio.umask() == mask
    fileio.write_json(tmp_path / "a.json", {"x": 1})
    fileio.save_torch(tmp_path / "b.pt", {"x": torch.ones(1)})
    for name in ("a.json", "b.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_the_folder_is_flushed_after_the_rename(tmp_path, monkeypatch):
    flushed = []
    monkeypatch.setattr(fileio, "fsync_dir", flushed.append)
    fileio.write_text(tmp_path / "sub" / "a.txt", "hello")
    assert flushed == [tmp_path / "sub"]
    assert (tmp_path / "sub" / "a.txt").read_text() == "hello"
    fileio.fsync_dir(tmp_path)  # the real one works on an ordinary folder
    fileio.fsync_dir(tmp_path / "missing")  # and is a no-op where it cannot open it


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    fileio.write_json(path, {"version": 1})

    def half(f):
        f.write(b'{"version": ')
        raise KeyboardInterrupt  # killed in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(path, half)
    assert fileio.read_json(path) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_temporary_file_names():
    assert fileio.is_temporary(".metrics.json.k2j_x8a1.tmp")
    assert fileio.is_temporary(".metrics.json.k2j_x8a1.tmp", "metrics.json")
    assert not fileio.is_temporary(".metrics.json.k2j_x8a1.tmp", "status.json")
    assert not fileio.is_temporary("metrics.json")
    assert not fileio.is_temporary(".lock")
    assert not fileio.is_temporary("notes.tmp")


def test_torch_files_load_with_weights_only_or_say_why_not(tmp_path):
    good = tmp_path / "good.pt"
    fileio.save_torch(good, {"t": torch.arange(3), "rows": [{"a": 1.5}], "n": 2})
    assert fileio.load_torch(good)["rows"] == [{"a": 1.5}]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(UnreadableFile, match=r"truncated\.pt: not a readable torch file"):
        fileio.load_torch(truncated)
    code = tmp_path / "code.pt"  # a pickled object that would run code: refused
    torch.save({"f": os.getcwd, "s": slice(1, 2)}, code)
    with pytest.raises(UnreadableFile, match=r"code\.pt: not a readable torch file"):
        fileio.load_torch(code)
    with pytest.raises(FileNotFoundError):
        fileio.load_torch(tmp_path / "missing.pt")
