"""Data sets and their train / held-out / test splits.

    load(name, root, *, heldout, seed, ...) -> Splits

The held-out (threshold calibration) split comes from the training data: a permutation
of the original training set seeded by `seed`; its last `heldout` positions are held out
(returned as `Splits.heldout_indices`, indices into the original training set), the rest
train. Held-out and test batches are transformed alike (no augmentation). Subsets for
smoke runs take the first k of train (after the split) and the first k of test.

Splits.batches('train', ...) reshuffles per (seed, epoch) and augments; other splits come
in a fixed order (targets(split) order). With world_size > 1 every split is sharded like
DistributedSampler (padded by repeating the head, rank r takes every world_size-th);
`unshard(per_rank_outputs, size)` restores the split order and drops the padding.
CIFAR, MNIST and synthetic are held in memory as uint8 and augmented per batch on the
device (TensorSplits); ImageNet reads files through DataLoader workers (FolderSplits,
option 'workers'). Synthetic splits also offer difficulty(split) and `prototypes`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import DatasetNotFound, MissingDependency
from .imagenet import load_imagenet
from .splits import Splits, TensorSplits, mix_seed, shard, unshard, uint8_mean_std
from .vision import NORMALIZATIONS, load_arrays
from . import synthetic as _synthetic

__all__ = ["names", "load", "Splits", "TensorSplits", "DatasetNotFound", "MissingDependency", "shard", "unshard",
           "split_indices", "OPTIONS", "NORMALIZATIONS"]

# name -> allowed options and their defaults
OPTIONS: dict[str, dict] = {
    "cifar10": {"augment": True, "normalization": "standard"},
    "cifar100": {"augment": True, "normalization": "standard"},
    "mnist": {"augment": True, "image_size": 32, "channels": 3},
    "fashion_mnist": {"augment": True, "image_size": 32, "channels": 3},
    "imagenet": {"augment": True, "workers": 8, "image_size": 224, "resize": 256},
    "synthetic": {"augment": True, **_synthetic.DEFAULTS},
}


def names() -> list[str]:
    return sorted(OPTIONS)


def split_indices(n: int, heldout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, heldout) indices into a training set of n images: a permutation seeded by
    `seed`, its last `heldout` entries held out."""
    if heldout < 0:
        raise ValueError(f"heldout must be >= 0, got {heldout}")
    if heldout >= n:
        raise ValueError(f"heldout={heldout} leaves no training images (training set has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed)))
    return perm[:n - heldout], perm[n - heldout:]


def _subset(idx: torch.Tensor, k: int | None, what: str) -> torch.Tensor:
    if k is None:
        return idx
    if k < 1:
        raise ValueError(f"{what} must be >= 1 or None, got {k}")
    return idx[:k]


def _options(name: str, options: dict | None) -> dict:
    allowed = OPTIONS[name]
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for data set {name!r}; allowed: {sorted(allowed)}")
    return {**allowed, **(options or {})}


def load(name: str, root: str | Path, *, download: bool = False, heldout: int, seed: int,
         train_subset: int | None = None, test_subset: int | None = None,
         options: dict | None = None) -> Splits:
    """Load data set `name` from `root` (ignored by 'synthetic') and split it.

    options (per data set, see OPTIONS): 'augment' (all; False serves train batches
    un-augmented), cifar10 / cifar100: normalization ('standard' constants, or the BoostNet
    reference's: 'reference'), synthetic: num_classes, image_size, channels, train_size,
    test_size, data_seed, max_blend, max_shift, max_noise; mnist / fashion_mnist: image_size
    (32 = zero-padded, 28), channels (3 = repeated, 1); imagenet: workers (DataLoader worker
    processes), image_size, resize.
    """
    if name not in OPTIONS:
        raise ValueError(f"unknown data set {name!r}; known: {names()}")
    opts = _options(name, options)
    root = Path(root).expanduser()
    if name == "imagenet":
        return load_imagenet(root, download=download, heldout=heldout, seed=seed,
                             train_subset=train_subset, test_subset=test_subset, options=opts,
                             split_indices=split_indices, subset=_subset)
    augment = bool(opts.pop("augment"))
    if name == "synthetic":
        data = _synthetic.make(opts)
        (xtr, ytr, dtr), (xte, yte, dte) = data["train"], data["test"]
        n_classes, spec = opts["num_classes"], dict(crop_padding=4, flip=False)
    else:
        xtr, ytr, xte, yte, n_classes, spec = load_arrays(name, root, download, opts)
    tr, ho = split_indices(len(xtr), heldout, seed)
    tr = _subset(tr, train_subset, "train_subset")
    te = _subset(torch.arange(len(xte)), test_subset, "test_subset")
    mean, std = spec.pop("mean", None), spec.pop("std", None)
    if mean is None:  # the data set's own statistics, over the whole original train set
        mean, std = uint8_mean_std(xtr)
    splits_cls = SyntheticSplits if name == "synthetic" else TensorSplits
    s = splits_cls(name, int(n_classes), train_images=xtr, train_labels=ytr, test_images=xte,
                   test_labels=yte, train_idx=tr, heldout_idx=ho, test_idx=te, mean=mean,
                   std=std, augment=augment, **spec)
    if name == "synthetic":
        s._difficulty = {"train": dtr, "test": dte}
        s.prototypes = data["prototypes"]
    return s


class SyntheticSplits(TensorSplits):
    """TensorSplits plus the per-image difficulty in [0, 1] and the class prototypes."""

    prototypes: torch.Tensor

    def difficulty(self, split: str) -> torch.Tensor:
        src, idx = self._index[split]
        return self._difficulty[src][idx]
