"""Train / held-out / test splits of an image classification data set, served as batches.

`Splits` is the interface every data set implements; `TensorSplits` serves data sets
that fit in memory as uint8 tensors (CIFAR, MNIST, synthetic): augmentation (random crop
with zero padding, optional horizontal flip) and normalization run per batch, vectorized,
on the training device.

Sharding follows torch.utils.data.DistributedSampler (drop_last=False): the index list
is padded by repeating its head until its length divides world_size, and rank r takes
positions r, r + world_size, ...  `unshard` undoes this on gathered per-rank results.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

SPLITS = ("train", "heldout", "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several ints (seed, epoch, rank, ...), stable across runs."""
    h = 0x243F6A8885A308D3
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 % (1 << 64)
        h ^= h >> 29
    return h % (1 << 63)


def shard(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's share of `indices`, padded and strided like DistributedSampler."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in [0, {world_size})")
    n = len(indices)
    if world_size == 1 or n == 0:
        return indices
    total = math.ceil(n / world_size) * world_size
    pad = total - n
    if pad:
        indices = torch.cat([indices, indices.repeat(math.ceil(pad / n))[:pad]])
    return indices[rank:total:world_size]


def unshard(parts: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """Undo `shard`: parts[r] holds rank r's results in its batch order (same length for
    every rank); returns the n results in the split's original order, padding dropped."""
    stacked = torch.stack(list(parts), dim=1)  # (per_rank, world_size, ...)
    return stacked.reshape(-1, *stacked.shape[2:])[:n]


def shard_len(n: int, world_size: int) -> int:
    return n if world_size == 1 or n == 0 else math.ceil(n / world_size)


def resolve_drop_last(split: str, drop_last: bool | None, n: int, batch_size: int) -> bool:
    """Default: drop the last incomplete training batch (BatchNorm dislikes tiny batches)
    unless the shard holds less than one full batch; never drop on evaluation splits."""
    if drop_last is None:
        return split == "train" and n >= batch_size
    return drop_last


def count_batches(n: int, batch_size: int, drop: bool) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return n // batch_size if drop else math.ceil(n / batch_size)


class Splits:
    """Interface of a data set split into train / heldout / test.

    Attributes: name, num_classes, input_size (C, H, W), heldout_indices (list of ints
    into the original training set, in the order batches('heldout') yields them) and
    train_indices (likewise for 'train', before shuffling).
    """

    name: str
    num_classes: int
    input_size: tuple[int, int, int]
    heldout_indices: list[int]
    train_indices: list[int]

    def size(self, split: str) -> int:
        raise NotImplementedError

    def targets(self, split: str) -> torch.Tensor:
        raise NotImplementedError

    def batches(self, split: str, batch_size: int, *, device="cpu", epoch: int = 0,
                seed: int = 0, rank: int = 0, world_size: int = 1,
                drop_last: bool | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def num_batches(self, split: str, batch_size: int, world_size: int = 1,
                    drop_last: bool | None = None) -> int:
        n = shard_len(self.size(split), world_size)
        return count_batches(n, batch_size, resolve_drop_last(split, drop_last, n, batch_size))

    def _order(self, split: str, epoch: int, seed: int, rank: int, world_size: int) -> torch.Tensor:
        """Positions (into the split) this rank visits this epoch."""
        check_split(split)
        n = self.size(split)
        if split == "train":
            g = torch.Generator().manual_seed(mix_seed(seed, epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        return shard(order, rank, world_size)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.size(s)}" for s in SPLITS)
        return f"{type(self).__name__}({self.name}, classes={self.num_classes}, input={self.input_size}, {sizes})"


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Vectorized RandomCrop(size, padding, fill=0) + RandomHorizontalFlip on a batch
    x (B, C, H, W) of any dtype, on x's device; randomness drawn on the CPU from g.
    One gather: output pixel (i, j) of image b reads padded pixel (oy_b + i, ox_b + j'),
    j' = j, or W - 1 - j when b is flipped."""
    b, c, h, w = x.shape
    if padding <= 0 and not flip:
        return x
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=g)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=g)
    cols = torch.arange(w).expand(b, w)
    if flip:
        flipped = torch.rand(b, generator=g) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    wp = w + 2 * padding
    flat = (oy[:, None, None] + torch.arange(h)[None, :, None]) * wp + (ox[:, None] + cols)[:, None, :]
    flat = flat.view(b, 1, h * w).to(x.device).expand(b, c, h * w)
    xp = F.pad(x, (padding,) * 4) if padding > 0 else x
    return xp.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


class TensorSplits(Splits):
    """In-memory data set: uint8 images (N, C0, H, W) with C0 in {1, 3}; C0 = 1 is
    repeated to `channels` at batch time (MNIST served as 3x32x32)."""

    def __init__(self, name: str, num_classes: int, *, train_images: torch.Tensor,
                 train_labels: torch.Tensor, test_images: torch.Tensor,
                 test_labels: torch.Tensor, train_idx: torch.Tensor, heldout_idx: torch.Tensor,
                 test_idx: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                 crop_padding: int = 4, flip: bool = True, augment: bool = True,
                 channels: int | None = None):
        self.name, self.num_classes = name, num_classes
        self._images = {"train": train_images, "test": test_images}
        self._labels = {"train": train_labels.long(), "test": test_labels.long()}
        # split -> (source tensor key, indices into it)
        self._index = {"train": ("train", train_idx.long()), "heldout": ("train", heldout_idx.long()),
                       "test": ("test", test_idx.long())}
        self.train_indices = train_idx.tolist()
        self.heldout_indices = heldout_idx.tolist()
        c0, h, w = train_images.shape[1:]
        self.channels = channels or c0
        self.input_size = (self.channels, h, w)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.crop_padding, self.flip, self.augment = crop_padding, flip, augment
        self._on_device: dict[str, dict[str, torch.Tensor]] = {}

    def size(self, split: str) -> int:
        check_split(split)
        return len(self._index[split][1])

    def targets(self, split: str) -> torch.Tensor:
        check_split(split)
        src, idx = self._index[split]
        return self._labels[src][idx]

    def images(self, split: str) -> torch.Tensor:
        """Raw uint8 images of a split (un-normalized, un-augmented), in targets() order."""
        src, idx = self._index[split]
        return self._images[src][idx]

    def _device_data(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in self._on_device:  # copy the uint8 data to the device once
            self._on_device[key] = {k: v.to(device) for k, v in {
                **{f"x_{s}": t for s, t in self._images.items()},
                **{f"y_{s}": t for s, t in self._labels.items()}}.items()}
        return self._on_device[key]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C0, H, W) -> normalized float32 (B, channels, H, W)."""
        mean = torch.tensor(self.mean, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(-1, 1, 1)
        x = (x.float() / 255 - mean) / std
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1).contiguous()
        return x

    def batches(self, split, batch_size, *, device="cpu", epoch=0, seed=0, rank=0,
                world_size=1, drop_last=None):
        device = torch.device(device)
        order = self._order(split, epoch, seed, rank, world_size)
        drop = resolve_drop_last(split, drop_last, len(order), batch_size)
        nb = count_batches(len(order), batch_size, drop)
        src, idx = self._index[split]
        data = self._device_data(device)
        x_all, y_all = data[f"x_{src}"], data[f"y_{src}"]
        sel = idx[order].to(device)
        augment = split == "train" and self.augment
        g = torch.Generator().manual_seed(mix_seed(seed, epoch, rank, 1))
        for i in range(nb):
            j = sel[i * batch_size:(i + 1) * batch_size]
            x = x_all[j]
            if augment:
                x = random_crop_flip(x, self.crop_padding, self.flip, g)
            yield self.normalize(x), y_all[j]


def split_indices(n: int, heldout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, heldout) indices into a training set of n images: a permutation seeded by
    `seed`, its last `heldout` entries held out."""
    if heldout < 0:
        raise ValueError(f"heldout must be >= 0, got {heldout}")
    if heldout >= n:
        raise ValueError(f"heldout={heldout} leaves no training images (training set has {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed)))
    return perm[:n - heldout], perm[n - heldout:]


def first(idx: torch.Tensor, k: int | None, what: str) -> torch.Tensor:
    """The first k indices (all when k is None): a subset for smoke runs."""
    if k is None:
        return idx
    if k < 1:
        raise ValueError(f"{what} must be >= 1 or None, got {k}")
    return idx[:k]


def uint8_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units) of uint8 images (N, C, H, W), exact,
    from a 256-bin histogram per channel (no float copy of the data)."""
    means, stds = [], []
    v = torch.arange(256, dtype=torch.float64) / 255
    for c in range(images.shape[1]):
        hist = torch.zeros(256, dtype=torch.float64)
        for chunk in images[:, c].split(4096):
            hist += torch.bincount(chunk.reshape(-1).long(), minlength=256).double()
        p = hist / hist.sum()
        m = (p * v).sum()
        means.append(float(m))
        stds.append(float(((p * (v - m) ** 2).sum()).sqrt()))
    return means, stds
