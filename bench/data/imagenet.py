"""ImageNet (or any ImageFolder data set laid out as root/train/<class>/*, root/val/<class>/*)
served through torch DataLoader workers with the standard transforms: RandomResizedCrop
+ horizontal flip for train, Resize + CenterCrop for held-out and val (test).

Augmentation randomness comes from the DataLoader's worker seeding, which is derived from
(seed, epoch, rank), so it is reproducible when workers > 0; with workers = 0 the
transforms draw from the global torch RNG (the batch order is seeded either way).
"""
from __future__ import annotations


import torch

from .errors import DatasetNotFound
from .registry import Request, register
from .splits import (Splits, check_split, count_batches, first, mix_seed, resolve_drop_last,
                     split_indices)
from .vision import torchvision

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FolderSplits(Splits):
    def __init__(self, name, train_set, train_eval_set, test_set, train_idx, heldout_idx,
                 test_idx, image_size, workers):
        self.name = name
        self.num_classes = len(train_set.classes)
        self.input_size = (3, image_size, image_size)
        self.workers = workers
        self._sets = {"train": train_set, "heldout": train_eval_set, "test": test_set}
        self._index = {"train": train_idx, "heldout": heldout_idx, "test": test_idx}
        self.train_indices, self.heldout_indices = train_idx.tolist(), heldout_idx.tolist()

    def size(self, split):
        check_split(split)
        return len(self._index[split])

    def targets(self, split):
        check_split(split)
        t = torch.as_tensor(self._sets[split].targets, dtype=torch.long)
        return t[self._index[split]]

    def batches(self, split, batch_size, *, device="cpu", epoch=0, seed=0, rank=0,
                world_size=1, drop_last=None):
        device = torch.device(device)
        order = self._order(split, epoch, seed, rank, world_size)
        drop = resolve_drop_last(split, drop_last, len(order), batch_size)
        count_batches(len(order), batch_size, drop)  # validates batch_size
        subset = torch.utils.data.Subset(self._sets[split], self._index[split][order].tolist())
        loader = torch.utils.data.DataLoader(
            subset, batch_size=batch_size, shuffle=False, drop_last=drop,
            num_workers=self.workers, pin_memory=device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(mix_seed(seed, epoch, rank, 1)))
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@register("imagenet", options={"workers": 8, "image_size": 224, "resize": 256},
          num_classes=1000, input_size=(3, 224, 224), heldout=50000)
def load_imagenet(request: Request) -> FolderSplits:
    """ImageNet (ILSVRC2012) from ImageFolder trees; the paper holds out 50,000 training
    images."""
    root, download, options = request.root, request.download, request.options
    tv = torchvision()
    T = tv.transforms
    missing = [str(root / d) for d in ("train", "val") if not (root / d).is_dir()]
    if missing:
        raise DatasetNotFound(
            f"imagenet: folder(s) {', '.join(missing)} not found; expected ImageFolder trees "
            f"{root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG. ImageNet cannot be "
            f"downloaded automatically{' (download: true ignored)' if download else ''}: get "
            f"ILSVRC2012 from image-net.org and sort val into class folders.")
    size, resize = int(options["image_size"]), int(options["resize"])
    norm = T.Normalize(MEAN, STD)
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    eval_tf = T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor(), norm])
    if not options["augment"]:
        train_tf = eval_tf
    train_set = tv.datasets.ImageFolder(str(root / "train"), transform=train_tf)
    train_eval = tv.datasets.ImageFolder(str(root / "train"), transform=eval_tf)
    test_set = tv.datasets.ImageFolder(str(root / "val"), transform=eval_tf)
    if test_set.classes != train_set.classes:
        raise DatasetNotFound(f"imagenet: class folders of {root}/val differ from {root}/train")
    tr, ho = split_indices(len(train_set), request.heldout, request.seed)
    tr = first(tr, request.train_subset, "train_subset")
    te = first(torch.arange(len(test_set)), request.test_subset, "test_subset")
    return FolderSplits("imagenet", train_set, train_eval, test_set, tr, ho, te, size,
                        int(options["workers"]))
