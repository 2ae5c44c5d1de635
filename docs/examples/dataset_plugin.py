"""A worked example of a new data set, plugged in without editing the harness.

``shapes``: 32x32 colour images of four classes (square, disc, ring, cross) drawn at a
random size, place and colour on a random background, with Gaussian noise. It is made
from its seed, so nothing needs downloading; a data set read from files has the same
shape: read them in the loader (from ``request.root``, the suite's dataset.root) and
return the same ``Images``.

What the harness needs from a data set:
- a loader registered with ``bench.data.register(name, options=..., num_classes=...)``:
  the options a suite may set and their defaults (every data set also takes ``augment``),
  the number of classes, the image shape if not 3x32x32, and how many training images
  to hold out by default (for thresholds and tuning; never the test set);
- the loader takes a ``bench.data.Request`` (root, download, options with defaults
  filled, ...) and returns ``bench.data.Images``: uint8 images (N, C, H, W) and integer
  labels for the original train and test sets, plus the training augmentation. The
  harness splits off the held-out images (seeded), normalizes, augments and batches.

Used by docs/examples/add-a-data-set.yaml; docs/extending.md, "Add a data set", walks
through it.
"""
from __future__ import annotations

import torch

from bench import data

SIZE, CLASSES = 32, ("square", "disc", "ring", "cross")


def draw(n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (uint8, (n, 3, 32, 32)) and their labels, from a generator seeded by seed."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(len(CLASSES), (n,), generator=g)
    r = torch.randint(5, 13, (n, 1, 1), generator=g).float()  # half the side, pixels
    cy, cx = (torch.rand(2, n, 1, 1, generator=g) * (SIZE - 2 * r) + r)  # inside the image
    yy, xx = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(),
                            indexing="ij")
    dy, dx = (yy - cy).abs(), (xx - cx).abs()  # (n, 32, 32) distances to the centre
    dist = (dy ** 2 + dx ** 2).sqrt()
    masks = torch.stack([torch.maximum(dy, dx) <= r,  # square
                         dist <= r,  # disc
                         (dist <= r) & (dist >= r / 2),  # ring
                         ((dy <= r / 3) & (dx <= r)) | ((dx <= r / 3) & (dy <= r))])  # cross
    mask = masks[y, torch.arange(n)].unsqueeze(1).float()  # (n, 1, 32, 32)
    colour, background = torch.rand(2, n, 3, 1, 1, generator=g)
    x = mask * colour + (1 - mask) * background * 0.5
    x = x + noise * torch.randn(n, 3, SIZE, SIZE, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


@data.register("shapes", options={"train_size": 2000, "test_size": 500, "noise": 0.3,
                                  "data_seed": 0},
               num_classes=len(CLASSES), heldout=lambda options: options["train_size"] // 5)
def shapes(request: data.Request) -> data.Images:
    o = request.options
    if not 0 <= o["noise"] <= 1:
        raise ValueError(f"data set 'shapes': option noise must be in [0, 1], got {o['noise']}")
    train = draw(o["train_size"], o["noise"], seed=2 * o["data_seed"])
    test = draw(o["test_size"], o["noise"], seed=2 * o["data_seed"] + 1)  # its own stream
    # Augmentation of training batches: random crops with 2 pixels of zero padding and
    # horizontal flips (the shapes are symmetric, so a flip never changes the class).
    return data.Images(*train, *test, num_classes=len(CLASSES), crop_padding=2, flip=True)
