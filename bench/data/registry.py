"""Registry of data sets, in the style of the backbone and method registries.

A data set is a loader function registered under a name with what the suite needs to know
before loading anything: its options with their defaults, its number of classes and image
shape, and how many training images are held out by default::

    @register("stripes", options={"train_size": 2000, "test_size": 500}, num_classes=4)
    def stripes(request: Request) -> Images:
        ...  # uint8 images (N, C, H, W) and labels for train and test

The loader gets a :class:`Request` (where the data live, whether to download, the options
with every default filled, the split's seed and sizes) and returns either :class:`Images`
(held in memory; ``bench.data.load`` splits and serves them) or a finished
:class:`~bench.data.splits.Splits` (data sets that stream from disk, such as ImageNet).
Every data set takes the option ``augment`` (train batches augmented or not) without
declaring it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import torch

from bench.registry import Registry

from .splits import Splits, TensorSplits, first, split_indices, uint8_mean_std

AUGMENT = {"augment": True}  # an option of every data set


@dataclass(frozen=True)
class Request:
    """What a loader is asked for: ``options`` holds every declared option (defaults filled)
    and ``augment``; ``heldout``, ``seed`` and the subsets are for loaders that split
    themselves (those returning Splits)."""

    name: str
    root: Path
    download: bool
    options: dict
    heldout: int
    seed: int
    train_subset: int | None = None
    test_subset: int | None = None


@dataclass
class Images:
    """An in-memory data set: uint8 images (N, C, H, W), C in {1, 3}, and integer labels
    in [0, num_classes) for the original train and test sets.

    ``crop_padding`` and ``flip``: training augmentation (random crop with zero padding,
    horizontal flip). ``mean``/``std``: per-channel normalization in [0, 1] units (None:
    computed from the training images). ``channels``: serve one stored channel repeated to
    this many (None: as stored)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    crop_padding: int = 4
    flip: bool = True
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    channels: int | None = None


Loader = Callable[[Request], Union[Images, Splits]]
Heldout = Union[int, Callable[[dict], int]]


@dataclass(frozen=True)
class Dataset:
    """A registered data set."""

    name: str
    loader: Loader
    options: dict  # every option and its default, augment included
    num_classes: int | None  # None: the option num_classes says
    input_size: tuple[int, int, int]  # (C, H, W) unless options channels/image_size say
    heldout: Heldout  # default held-out images: a number, or a function of the options
    module: str  # where it was registered (built-in or a plugin)

    def shape(self, options: dict) -> tuple[int | None, tuple[int, int, int]]:
        """(num_classes, (C, H, W)) of the images served with ``options``."""
        c, h, w = self.input_size
        size = options.get("image_size")
        return (options.get("num_classes", self.num_classes),
                (options.get("channels", c), size or h, size or w))

    def default_heldout(self, options: dict) -> int:
        return self.heldout(options) if callable(self.heldout) else self.heldout


DATASETS: Registry[Dataset] = Registry("data set")


def register(name: str, *, options: dict | None = None, num_classes: int | None = None,
             input_size: tuple[int, int, int] = (3, 32, 32), heldout: Heldout = 5000):
    """Decorator registering a data set loader under ``name``.

    ``options``: the options a suite may set (``dataset.options``) with their defaults;
    ``num_classes`` (or an option of that name); ``input_size`` (C, H, W) of the images
    served (options ``channels`` and ``image_size`` override it); ``heldout``: the held-out
    images taken from the training set when the suite does not say (a number, or a
    function of the options)."""
    declared = dict(options or {})
    if "augment" in declared:
        raise ValueError(f"data set {name!r}: every data set has the option 'augment'; "
                         "do not declare it")
    if num_classes is None and "num_classes" not in declared:
        raise ValueError(f"data set {name!r}: give num_classes, or an option num_classes")

    return DATASETS.register(name, lambda loader: Dataset(
        name, loader, {**AUGMENT, **declared}, num_classes, tuple(input_size), heldout,
        loader.__module__))


def names() -> list[str]:
    """Registered data set names, sorted."""
    return DATASETS.names()


def get(name: str) -> Dataset:
    return DATASETS.get(name)


def options_of(name: str) -> dict:
    """The options of data set ``name`` with their defaults (``augment`` included)."""
    return dict(get(name).options)


def serve(images: Images, request: Request, cls: type[TensorSplits] = TensorSplits
          ) -> TensorSplits:
    """Split in-memory images as every data set is split: the held-out images are the
    last ``request.heldout`` of a permutation of the training set seeded by
    ``request.seed``; subsets take the first k of train (after the split) and of test."""
    x = images
    check(x, request.name)
    tr, ho = split_indices(len(x.train_images), request.heldout, request.seed)
    tr = first(tr, request.train_subset, "train_subset")
    te = first(torch.arange(len(x.test_images)), request.test_subset, "test_subset")
    mean, std = x.mean, x.std
    if mean is None or std is None:  # the data set's own statistics, whole original train set
        mean, std = uint8_mean_std(x.train_images)
    return cls(request.name, int(x.num_classes), train_images=x.train_images,
               train_labels=x.train_labels, test_images=x.test_images,
               test_labels=x.test_labels, train_idx=tr, heldout_idx=ho, test_idx=te,
               mean=mean, std=std, crop_padding=x.crop_padding, flip=x.flip,
               augment=bool(request.options["augment"]), channels=x.channels)


def check(images: Images, name: str) -> None:
    """A loader's Images as serve needs them, or a ValueError naming the data set."""
    for split in ("train", "test"):
        x, y = getattr(images, f"{split}_images"), getattr(images, f"{split}_labels")
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"data set {name!r}: {split}_images must be a uint8 tensor "
                             f"(N, C, H, W), got {getattr(x, 'dtype', type(x).__name__)} "
                             f"of shape {tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] not in (1, 3):
            raise ValueError(f"data set {name!r}: {split}_images has {x.shape[1]} channels; "
                             "expected 1 or 3")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x):
            raise ValueError(f"data set {name!r}: {split}_labels must be a 1-D tensor with "
                             f"one label per image ({len(x)}), got shape "
                             f"{tuple(getattr(y, 'shape', ()))}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= images.num_classes):
            raise ValueError(f"data set {name!r}: {split}_labels must lie in "
                             f"[0, {images.num_classes}), found {int(y.min())}..{int(y.max())}")
