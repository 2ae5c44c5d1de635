"""The fused batch-norm kernel of ``batchnorm.c``, compiled on first use.

:class:`bench.backbones.layout.BatchNorm2d` computes training-mode batch norm of channels_last
float32 CPU tensors with exact (double) sums. Written with PyTorch ops that takes 5-7 passes
over each map in each direction; the C kernel takes 3 forward and 2 backward, which makes it
about 2.7x faster (msdnet10_cifar's 170 batch norms, batch 64, one thread: 54 against 148 ms
forward + backward; docs/benchmarks.md).

The source is compiled with the system's C compiler (``$CC``, else ``cc``) into a per-user
cache (``$XDG_CACHE_HOME/boostnet-bench``, else ``~/.cache/boostnet-bench``), keyed by the
source, the compiler and the CPU (it is built for this CPU, ``-march=native``), and loaded
with ctypes; it needs no PyTorch headers and builds in a fraction of a second. Without a
compiler (or with ``BENCH_NATIVE_BATCHNORM=0``) :func:`kernel` returns None once with a
warning, and the PyTorch-op path is used: equally exact, slower.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("batchnorm.c")
FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-shared", "-fPIC"]
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
_ENABLED = [os.environ.get("BENCH_NATIVE_BATCHNORM", "1") != "0"]


@contextlib.contextmanager
def disabled():
    """Within this block the PyTorch-op batch norm is used (for comparisons and tests)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


def kernel() -> ctypes.CDLL | None:
    """The loaded kernel library, or None when switched off or not buildable here."""
    if not _ENABLED[-1]:
        return None
    if "lib" not in _loaded:
        with _lock:
            if "lib" not in _loaded:
                _loaded["lib"] = _load()
    return _loaded["lib"]


def implementation() -> str:
    """Which training-mode channels_last batch norm runs: "C kernel" or "PyTorch ops"."""
    return "C kernel" if kernel() is not None else "PyTorch ops"


def usable(x: torch.Tensor) -> bool:
    """Whether the kernel computes batch norm of ``x`` (float32 on CPU), and is available."""
    return x.dtype == torch.float32 and x.device.type == "cpu" and kernel() is not None


def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
            relu: bool = False):
    """(y, mean, invstd, biased var) of training-mode batch norm of channels_last ``x``;
    with ``relu`` y is the ReLU of the batch norm."""
    n, c, h, w = _checked(x).shape
    weight, bias = _flat(weight), _flat(bias)  # (held here while the kernel reads them)
    y = torch.empty_like(x, memory_format=torch.channels_last)
    mean, invstd, var = (torch.empty(c) for _ in range(3))
    _check(kernel().bn_forward(_ptr(x), n * h * w, c, _ptr(weight), _ptr(bias), float(eps),
                               int(relu), _ptr(y), _ptr(mean), _ptr(invstd), _ptr(var),
                               torch.get_num_threads()))
    return y, mean, invstd, var


def backward(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor,
             weight: torch.Tensor, bias: torch.Tensor, relu: bool = False):
    """(dx, dw, db) of training-mode batch norm (followed by a ReLU with ``relu``) for the
    output gradient ``grad``."""
    n, c, h, w = _checked(x).shape
    weight, bias = _flat(weight), _flat(bias)
    grad = grad.contiguous(memory_format=torch.channels_last)
    dx = torch.empty_like(x, memory_format=torch.channels_last)
    dw, db = torch.empty(c), torch.empty(c)
    _check(kernel().bn_backward(_ptr(grad), _ptr(x), n * h * w, c, _ptr(mean), _ptr(invstd),
                                _ptr(weight), _ptr(bias), int(relu), _ptr(dx), _ptr(dw),
                                _ptr(db), torch.get_num_threads()))
    return dx, dw, db


def _checked(x: torch.Tensor) -> torch.Tensor:
    """``x`` if the kernel can read it: a float32 CPU tensor, channels_last-contiguous."""
    if not (x.dtype == torch.float32 and x.device.type == "cpu" and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError(f"the batch-norm kernel reads 4-d channels_last float32 CPU tensors; "
                         f"got {x.dtype} on {x.device}, shape {tuple(x.shape)}, "
                         f"strides {x.stride()}")
    return x


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError("batch-norm kernel: out of memory for its accumulators")


def _load() -> ctypes.CDLL | None:
    """The library from the cache, built first when it is not there or does not load."""
    try:
        cc = _compiler()
        path = _library_path(cc)
        if path.is_file():
            try:
                return _open(path)
            except OSError:  # a broken file: build it again
                pass
        _compile(cc, path)
        return _open(path)
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        warnings.warn(f"the compiled batch norm ({SOURCE.name}) is unavailable, using the "
                      f"slower PyTorch-op version: {err}", RuntimeWarning, stacklevel=3)
        return None


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    i32 = ctypes.c_int
    lib.bn_forward.argtypes = [ptr, i64, i64, ptr, ptr, ctypes.c_double, i32, ptr, ptr, ptr,
                               ptr, i32]
    lib.bn_backward.argtypes = [ptr, ptr, i64, i64, ptr, ptr, ptr, ptr, i32, ptr, ptr, ptr,
                                i32]
    lib.bn_forward.restype = lib.bn_backward.restype = ctypes.c_int
    return lib


def _compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    found = shutil.which(cc)
    if found is None:
        raise RuntimeError(f"no C compiler {cc!r} on PATH (set CC to one)")
    return found


def _library_path(cc: str) -> Path:
    """Where the library that ``cc`` builds from this source for this CPU is cached."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), cc, version, *FLAGS,
                                    platform.machine(), _cpu_flags()]).encode()).hexdigest()
    return _cache_dir() / f"batchnorm-{key[:20]}.so"


def _compile(cc: str, path: Path) -> None:
    """Compile into a temporary file beside ``path``, then move it there (atomic: other
    processes see the old file or the whole new one). ``-march=native`` is tried first."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        errors: list[str] = []
        for extra in (["-march=native", "-fopenmp"], []):
            done = subprocess.run([cc, *FLAGS, *extra, str(SOURCE), "-o", tmp],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(tmp, path)
                return
            errors = done.stderr.strip().splitlines()[:3]
        raise RuntimeError(f"{cc} failed on {SOURCE}: {' | '.join(errors)}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cache_dir() -> Path:
    """The per-user cache; where it cannot be written (a read-only home), one folder of
    this user's in the temporary directory, shared by every process (not one per process)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "boostnet-bench"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return _private_temp_dir()


def _private_temp_dir() -> Path:
    """``$TMPDIR/boostnet-bench-<uid>``, mode 0700; refused (a fresh temporary folder,
    removed at exit, instead) when it is a link or someone else's: another user must not
    choose the library this process loads."""
    folder = Path(tempfile.gettempdir()) / f"boostnet-bench-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
                and not info.st_mode & 0o077):
            return folder
    except OSError:
        pass
    fresh = tempfile.mkdtemp(prefix="boostnet-bench-")
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return Path(fresh)


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), so that a cache shared by different machines never
    hands one a library built for another's instruction set."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()
