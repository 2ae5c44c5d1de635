"""A seeded synthetic image classification data set whose images vary in difficulty.

Each class has a prototype: a smooth random colour pattern (low-frequency noise
upsampled bicubically, plus some mid-frequency detail), normalized to zero mean and unit
std. Each image draws a difficulty d ~ U(0, 1) and is

    x = c(d) * roll((1 - a(d)) * P[y] + a(d) * P[o], shift(d)) + noise(d)

with o a random other class, a(d) = max_blend * d (blending with class o), c(d) = 1 - d/2
(lower contrast), shift(d) a circular shift of up to max_shift * d * size pixels in each
axis, and noise(d) = max_noise * d * (iid Gaussian + smooth Gaussian). Pixels are stored
as uint8: clamp(128 + 48 x). Easy images (d near 0) are their prototype, so template
matching (a shallow net) classifies them; hard ones are shifted, blended and noisy and
need translation invariance and averaging over large receptive fields (depth).

Defaults were chosen with a probe (10 epochs, Adam, default sizes, test accuracy overall
and per difficulty quartile): a linear classifier 73.5% (100 / 96 / 68 / 30%), a 4-layer
CNN 93% (100 / 100 / 99 / 73%): easy images exit early, hard ones need depth. With
max_shift 0.25, max_blend 0.45, max_noise 1.0 the hardest quartile was mostly noise and
the CNN gained nothing over the linear model.

Everything is drawn from generators seeded by data_seed, so the data set is identical
on every machine; train and test use separate streams (changing test_size does not
change the training images).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .splits import mix_seed

DEFAULTS = {
    "num_classes": 10,
    "image_size": 32,
    "channels": 3,
    "train_size": 5000,
    "test_size": 1000,
    "data_seed": 0,
    "max_blend": 0.35,
    "max_shift": 0.5,
    "max_noise": 0.7,
}


def _smooth(n: int, channels: int, size: int, coarse: int, g: torch.Generator) -> torch.Tensor:
    """Gaussian noise on a coarse x coarse grid, upsampled bicubically to size x size.
    The upsampling is linear, so it runs as one matmul with its (coarse^2, size^2) matrix."""
    basis = torch.eye(coarse * coarse).view(-1, 1, coarse, coarse)
    up = F.interpolate(basis, size=(size, size), mode="bicubic", align_corners=False)
    z = torch.randn(n * channels, coarse * coarse, generator=g)
    return (z @ up.view(coarse * coarse, -1)).view(n, channels, size, size)


def prototypes(num_classes: int, image_size: int, channels: int, data_seed: int) -> torch.Tensor:
    """Class prototypes (num_classes, channels, size, size), zero mean, unit std each."""
    g = torch.Generator().manual_seed(mix_seed(data_seed, 2))
    p = _smooth(num_classes, channels, image_size, 4, g) + 0.5 * _smooth(num_classes, channels, image_size, 8, g)
    p = p - p.mean(dim=(1, 2, 3), keepdim=True)
    return p / p.flatten(1).std(dim=1).view(-1, 1, 1, 1)


def _roll(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per-sample circular shift of x (N, C, H, W) by (dy[i], dx[i]) pixels, as one gather."""
    n, c, h, w = x.shape
    rows = (torch.arange(h)[None, :] - dy[:, None]) % h  # (N, H)
    cols = (torch.arange(w)[None, :] - dx[:, None]) % w  # (N, W)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, flat).view(n, c, h, w)


CHUNK = 512  # images generated per step (keeps temporaries in cache; part of the recipe)


def generate(n: int, protos: torch.Tensor, *, stream: int, data_seed: int, max_blend: float,
             max_shift: float, max_noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n images -> (uint8 images (n, C, S, S), int64 labels (n,), float difficulty (n,))."""
    k, c, s, _ = protos.shape
    g = torch.Generator().manual_seed(mix_seed(data_seed, stream))
    y = (torch.arange(n) % k)[torch.randperm(n, generator=g)]  # balanced classes
    d = torch.rand(n, generator=g)
    other = (y + torch.randint(1, k, (n,), generator=g)) % k if k > 1 else y
    images = torch.empty(n, c, s, s, dtype=torch.uint8)
    for i in range(0, n, CHUNK):
        j = slice(i, i + CHUNK)
        yc, dc, b = y[j], d[j], len(y[j])
        a = (max_blend * dc).view(-1, 1, 1, 1)
        x = protos[yc].mul_(1 - a).add_(protos[other[j]].mul_(a))
        m = (max_shift * s * dc).round()  # max shift of each image, pixels
        dy = ((torch.rand(b, generator=g) * 2 - 1) * m).round().long()
        dx = ((torch.rand(b, generator=g) * 2 - 1) * m).round().long()
        x = _roll(x, dy, dx).mul_((1 - dc / 2).view(-1, 1, 1, 1))  # lower contrast
        noise = torch.randn(b, c, s, s, generator=g).add_(_smooth(b, c, s, 8, g))
        x.add_(noise.mul_((max_noise * dc).view(-1, 1, 1, 1)))
        images[j] = x.mul_(48).add_(128).round_().clamp_(0, 255)
    return images, y, d


def make(options: dict) -> dict:
    """Generate the data set; returns dict with train/test images, labels, difficulty
    and the prototypes."""
    o = {**DEFAULTS, **options}
    for key in ("num_classes", "image_size", "channels", "train_size", "test_size"):
        if int(o[key]) < 1:
            raise ValueError(f"synthetic option {key} must be >= 1, got {o[key]}")
    for key, lo, hi in (("max_blend", 0.0, 0.5), ("max_shift", 0.0, 0.5), ("max_noise", 0.0, 10.0)):
        if not lo <= float(o[key]) <= hi or (key == "max_blend" and float(o[key]) == hi):
            # blend 0.5 would make the hardest images' label ambiguous
            raise ValueError(f"synthetic option {key} must be in [{lo}, {hi}{')' if key == 'max_blend' else ']'}, got {o[key]}")
    if o["channels"] not in (1, 3):
        raise ValueError(f"synthetic option channels must be 1 or 3, got {o['channels']}")
    protos = prototypes(int(o["num_classes"]), int(o["image_size"]), int(o["channels"]), int(o["data_seed"]))
    kw = dict(data_seed=int(o["data_seed"]), max_blend=float(o["max_blend"]),
              max_shift=float(o["max_shift"]), max_noise=float(o["max_noise"]))
    xtr, ytr, dtr = generate(int(o["train_size"]), protos, stream=0, **kw)
    xte, yte, dte = generate(int(o["test_size"]), protos, stream=1, **kw)
    return {"train": (xtr, ytr, dtr), "test": (xte, yte, dte), "prototypes": protos}
