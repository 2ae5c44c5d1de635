"""Data sets and their train / held-out / test splits.

    load(name, root, *, heldout, seed, ...) -> Splits
    register(name, options=..., num_classes=...)   # a loader; see bench.data.registry

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

from .errors import DatasetNotFound, MissingDependency
from .registry import (Dataset, Images, Request, get, names, options_of, register, serve)
from .splits import Splits, TensorSplits, shard, split_indices, unshard
# Importing a module registers its data sets.
from . import imagenet, synthetic, vision  # noqa: E402,F401
from .synthetic import SyntheticSplits
from .vision import NORMALIZATIONS

__all__ = ["names", "load", "register", "get", "options_of", "Dataset", "Images", "Request",
           "serve", "Splits", "TensorSplits", "SyntheticSplits", "DatasetNotFound",
           "MissingDependency", "shard", "unshard", "split_indices", "NORMALIZATIONS"]


def _options(name: str, options: dict | None) -> dict:
    allowed = options_of(name)
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for data set {name!r}; allowed: {sorted(allowed)}")
    return {**allowed, **(options or {})}


def load(name: str, root: str | Path, *, download: bool = False, heldout: int, seed: int,
         train_subset: int | None = None, test_subset: int | None = None,
         options: dict | None = None) -> Splits:
    """Load data set `name` from `root` (ignored by 'synthetic') and split it.

    options: the data set's (``options_of(name)``: 'augment' for all, False serves train
    batches un-augmented; cifar10 / cifar100: normalization ('standard' constants, or
    the BoostNet reference's: 'reference'); synthetic: num_classes, image_size, channels, train_size,
    test_size, data_seed and the difficulty knobs; mnist / fashion_mnist: image_size (32 =
    zero-padded, 28), channels (3 = repeated, 1); imagenet: workers (DataLoader worker
    processes), image_size, resize; a plugin's: what it registered).
    """
    dataset = get(name)
    request = Request(name, Path(root).expanduser(), download, _options(name, options),
                      heldout, seed, train_subset, test_subset)
    out = dataset.loader(request)
    if isinstance(out, Images):
        return serve(out, request)
    if not isinstance(out, Splits):
        raise TypeError(f"data set {name!r}: its loader {dataset.module}.{dataset.loader.__name__} "
                        f"returned {type(out).__name__}; expected bench.data.Images or Splits")
    return out
