"""bench.fileio: atomic writes that honour the umask and flush the folder, and readers that
say what is wrong with a file."""
from __future__ import annotations

import errno
import fcntl
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


# -- links and failed writes --------------------------------------------------------------

def test_a_write_replaces_a_link_at_its_name_and_never_writes_through_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / "in").mkdir()
    link = tmp_path / "in" / "page.html"
    link.symlink_to(outside)
    dangling = tmp_path / "in" / "table.csv"
    dangling.symlink_to(tmp_path / "created-outside.csv")
    fileio.write_text(link, "new page")
    fileio.copy_file(outside, dangling)
    assert outside.read_text() == "keep me"
    assert not (tmp_path / "created-outside.csv").exists()
    assert not link.is_symlink() and link.read_text() == "new page"
    assert not dangling.is_symlink() and dangling.read_text() == "keep me"


def test_folders_that_are_links_are_refused_below_the_root(tmp_path):
    root = tmp_path / "root-link"
    (tmp_path / "real-root").mkdir()
    root.symlink_to(tmp_path / "real-root")  # the root itself may be a link
    assert fileio.make_folders(root / "a" / "b", root).is_dir()
    (tmp_path / "elsewhere").mkdir()
    (root / "c").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(fileio.LinkRefused) as err:
        fileio.make_folders(root / "c" / "d", root)
    assert str(err.value) == (f"{root / 'c'} is a symbolic link (to {tmp_path / 'elsewhere'}): "
                              "refusing to write through it; replace it by a folder")
    assert list((tmp_path / "elsewhere").iterdir()) == []


class FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("what", ["text", "torch"])
def test_a_full_disk_names_the_destination_and_leaves_the_old_file(tmp_path, monkeypatch,
                                                                   what):
    path = tmp_path / ("a.json" if what == "text" else "a.pt")
    fileio.write_text(path, "old")
    real = os.fdopen
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode), 100))
    with pytest.raises(fileio.CannotWrite) as err:
        if what == "text":
            fileio.write_text(path, "x" * 1000)
        else:  # torch.save reports the failed write as "RuntimeError: ... unexpected pos"
            fileio.save_torch(path, {"t": torch.zeros(1000)})
    assert str(err.value) == f"no space left on device while writing {path}"
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_failed_copy_names_its_destination_not_its_source(tmp_path, monkeypatch):
    source = tmp_path / "bundle.js"
    source.write_text("x" * 1000)
    target = tmp_path / "out" / "bundle.js"
    real = os.fdopen
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode), 10))
    with pytest.raises(fileio.CannotWrite, match=f"while writing {target}$"):
        fileio.copy_file(source, target)
    assert list(target.parent.iterdir()) == []


def test_a_lock_file_that_is_a_symlink_is_not_followed(tmp_path):
    # a planted link must not make the lock create or touch a file outside the folder
    outside = tmp_path / "outside"
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / ".lock").symlink_to(outside)
    with pytest.raises(OSError) as err:
        with fileio.locked(tmp_path / "suite" / ".lock"):
            pass
    assert err.value.errno == errno.ELOOP
    assert not outside.exists()


def test_the_lock_serialises_and_is_released(tmp_path):
    lock = tmp_path / "a" / ".lock"
    with fileio.locked(lock):
        fd = os.open(lock, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free after the block
    os.close(fd)
