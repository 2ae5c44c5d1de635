"""A seeded synthetic image classification data set whose images vary in difficulty.

Each class has a prototype P[k]: a smooth random colour pattern (low-frequency noise
upsampled bicubically, plus some mid-frequency detail), zero mean and unit std. Each image
draws a difficulty d ~ U(min_difficulty, 1) and is built in three steps:

    object = c(d) * roll((1 - a(d)) * P[y] + a(d) * P[o], shift(d))
    canvas = object shrunk to s(d) x s(d) pixels, pasted at a random place on clutter
    x      = canvas + noise(d)

Every knob is an option of the data set (dataset.options in a suite) and scales with d,
so that d = 0 is the plain prototype and d = 1 the hardest image:

- min_difficulty: the easiest difficulty drawn (0: from plain prototypes on; 0.5: every
  image at least half as hard as the hardest);
- max_blend: a(d) = max_blend * d of a random other class o is mixed in (< 0.5, so the
  label stays the larger part);
- c(d) = 1 - d/2: the object's contrast drops to half;
- max_shift: a circular shift of up to max_shift * d * size pixels in each axis;
- min_scale: the object's side is s(d) = size * (1 - (1 - min_scale) * d) pixels: from the
  whole image down to min_scale of it (1: never shrunk). A small object is a few pixels
  of fine detail, which an early exit's few, coarse layers resolve poorly;
- clutter: the background around a shrunk object is a random smooth pattern of the same
  kind as the prototypes (but of no class), times clutter (0: a flat grey background);
- max_noise: noise(d) = max_noise * d * (iid Gaussian + smooth Gaussian).

Pixels are stored as uint8: clamp(128 + 48 x). Easy images are nearly their prototype, so
template matching (a shallow net) classifies them; hard ones are small, shifted, blended
and noisy. With min_scale 1 and clutter 0 (the defaults) the images are those of earlier
versions exactly; the quickstart's setting and what it does to each exit are in
suites/quickstart.yaml and docs/benchmarks.md.

Everything is drawn from generators seeded by data_seed, so the data set is identical on
every machine; train and test use separate streams (changing test_size does not change the
training images), and the placement of shrunk objects a stream of its own (changing
min_scale or clutter changes nothing else).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import Images, Request, register, serve
from .splits import TensorSplits, mix_seed

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
    "min_scale": 1.0,
    "clutter": 0.0,
    "min_difficulty": 0.0,
}


HELDOUT_SHARE = 5  # held out by default: a fifth of the training set


def _smooth(n: int, channels: int, size: int, coarse: int, g: torch.Generator) -> torch.Tensor:
    """Gaussian noise on a coarse x coarse grid, upsampled bicubically to size x size.
    The upsampling is linear, so it runs as one matmul with its (coarse^2, size^2) matrix."""
    basis = torch.eye(coarse * coarse).view(-1, 1, coarse, coarse)
    up = F.interpolate(basis, size=(size, size), mode="bicubic", align_corners=False)
    z = torch.randn(n * channels, coarse * coarse, generator=g)
    return (z @ up.view(coarse * coarse, -1)).view(n, channels, size, size)


def _pattern(n: int, channels: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Smooth random patterns like the prototypes, zero mean and unit std each."""
    p = _smooth(n, channels, size, 4, g) + 0.5 * _smooth(n, channels, size, 8, g)
    p = p - p.mean(dim=(1, 2, 3), keepdim=True)
    return p / p.flatten(1).std(dim=1).view(-1, 1, 1, 1)


def prototypes(num_classes: int, image_size: int, channels: int, data_seed: int) -> torch.Tensor:
    """Class prototypes (num_classes, channels, size, size), zero mean, unit std each."""
    g = torch.Generator().manual_seed(mix_seed(data_seed, 2))
    return _pattern(num_classes, channels, image_size, g)


def _roll(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per-sample circular shift of x (N, C, H, W) by (dy[i], dx[i]) pixels, as one gather."""
    n, c, h, w = x.shape
    rows = (torch.arange(h)[None, :] - dy[:, None]) % h  # (N, H)
    cols = (torch.arange(w)[None, :] - dx[:, None]) % w  # (N, W)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, flat).view(n, c, h, w)


CHUNK = 512  # images generated per step (keeps temporaries in cache; part of the recipe)


def _shrink_onto(x: torch.Tensor, side: torch.Tensor, background: torch.Tensor,
                 g: torch.Generator) -> torch.Tensor:
    """Resize image i of x (N, C, S, S) to side[i] x side[i] (bilinear, antialiased) and
    paste it at a uniformly random place onto background[i]."""
    out = background.clone()
    s = x.shape[-1]
    for m in side.unique().tolist():
        idx = (side == m).nonzero().flatten()
        small = x[idx] if m == s else F.interpolate(x[idx], size=(m, m), mode="bilinear",
                                                    antialias=True, align_corners=False)
        oy = torch.randint(0, s - m + 1, (len(idx),), generator=g).tolist()
        ox = torch.randint(0, s - m + 1, (len(idx),), generator=g).tolist()
        for i, a, b, img in zip(idx.tolist(), oy, ox, small):
            out[i, :, a:a + m, b:b + m] = img
    return out


def generate(n: int, protos: torch.Tensor, *, stream: int, data_seed: int, max_blend: float,
             max_shift: float, max_noise: float, min_scale: float = 1.0, clutter: float = 0.0,
             min_difficulty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n images -> (uint8 images (n, C, S, S), int64 labels (n,), float difficulty (n,))."""
    k, c, s, _ = protos.shape
    g = torch.Generator().manual_seed(mix_seed(data_seed, stream))
    g_place = torch.Generator().manual_seed(mix_seed(data_seed, stream, 7))
    y = (torch.arange(n) % k)[torch.randperm(n, generator=g)]  # balanced classes
    d = min_difficulty + (1 - min_difficulty) * torch.rand(n, generator=g)  # U(min_difficulty, 1)
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
        if min_scale < 1 or clutter > 0:
            side = (s * (1 - (1 - min_scale) * dc)).round().long().clamp_(1, s)
            back = _pattern(b, c, s, g_place).mul_(clutter) if clutter > 0 else torch.zeros_like(x)
            x = _shrink_onto(x, side, back, g_place)
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
    for key, lo, hi in (("max_blend", 0.0, 0.5), ("max_shift", 0.0, 0.5), ("max_noise", 0.0, 10.0),
                        ("min_scale", 0.0, 1.0), ("clutter", 0.0, 10.0), ("min_difficulty", 0.0, 1.0)):
        # blend 0.5 would make the hardest images' label ambiguous; scale 0 leaves no object
        open_low, open_high = key == "min_scale", key in ("max_blend", "min_difficulty")
        v = float(o[key])
        if not lo <= v <= hi or (open_low and v == lo) or (open_high and v == hi):
            raise ValueError(f"synthetic option {key} must be in {'(' if open_low else '['}{lo}, "
                             f"{hi}{')' if open_high else ']'}, got {o[key]}")
    if o["channels"] not in (1, 3):
        raise ValueError(f"synthetic option channels must be 1 or 3, got {o['channels']}")
    protos = prototypes(int(o["num_classes"]), int(o["image_size"]), int(o["channels"]), int(o["data_seed"]))
    kw = dict(data_seed=int(o["data_seed"]), max_blend=float(o["max_blend"]),
              max_shift=float(o["max_shift"]), max_noise=float(o["max_noise"]),
              min_scale=float(o["min_scale"]), clutter=float(o["clutter"]),
              min_difficulty=float(o["min_difficulty"]))
    xtr, ytr, dtr = generate(int(o["train_size"]), protos, stream=0, **kw)
    xte, yte, dte = generate(int(o["test_size"]), protos, stream=1, **kw)
    return {"train": (xtr, ytr, dtr), "test": (xte, yte, dte), "prototypes": protos}


class SyntheticSplits(TensorSplits):
    """TensorSplits plus the per-image difficulty in [0, 1] and the class prototypes."""

    prototypes: torch.Tensor

    def difficulty(self, split: str) -> torch.Tensor:
        src, idx = self._index[split]
        return self._difficulty[src][idx]


@register("synthetic", options=DEFAULTS, input_size=(DEFAULTS["channels"],
                                                     DEFAULTS["image_size"],
                                                     DEFAULTS["image_size"]),
          heldout=lambda options: options["train_size"] // HELDOUT_SHARE)
def load(request: Request) -> SyntheticSplits:
    """The data set generated from its options (nothing to download; root is ignored)."""
    data = make(request.options)
    (xtr, ytr, dtr), (xte, yte, dte) = data["train"], data["test"]
    images = Images(xtr, ytr, xte, yte, int(request.options["num_classes"]), crop_padding=4,
                    flip=False)
    s = serve(images, request, SyntheticSplits)
    s._difficulty = {"train": dtr, "test": dte}
    s.prototypes = data["prototypes"]
    return s
