"""Tests of bench.data: splits, batching, sharding, augmentation and the synthetic set."""
import pytest
import torch

from bench import data
from bench.data import splits as sp

torch.set_num_threads(1)

SMALL = {"train_size": 600, "test_size": 200}


@pytest.fixture(scope="module")
def syn():
    return data.load("synthetic", "unused", heldout=100, seed=3, options=SMALL)


def test_names():
    assert data.names() == ["cifar10", "cifar100", "fashion_mnist", "imagenet", "mnist", "synthetic"]


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match="unknown data set"):
        data.load("cifar1000", "x", heldout=1, seed=0)
    with pytest.raises(ValueError, match=r"colour.*allowed.*num_classes"):
        data.load("synthetic", "x", heldout=1, seed=0, options={"colour": 1})


def test_heldout_too_large():
    with pytest.raises(ValueError, match="heldout"):
        data.load("synthetic", "x", heldout=600, seed=0, options=SMALL)


def test_split_sizes_disjoint_and_seeded(syn):
    assert (syn.size("train"), syn.size("heldout"), syn.size("test")) == (500, 100, 200)
    assert syn.num_classes == 10 and syn.input_size == (3, 32, 32)
    assert sorted(syn.train_indices + syn.heldout_indices) == list(range(600))
    again = data.load("synthetic", "unused", heldout=100, seed=3, options=SMALL)
    other = data.load("synthetic", "unused", heldout=100, seed=4, options=SMALL)
    assert again.heldout_indices == syn.heldout_indices
    assert other.heldout_indices != syn.heldout_indices
    # same data set for every split seed: only the split changes
    assert torch.equal(other.images("test"), syn.images("test"))


def test_split_is_last_of_seeded_permutation():
    tr, ho = data.split_indices(10, 3, seed=7)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(sp.mix_seed(7)))
    assert tr.tolist() == perm[:7].tolist() and ho.tolist() == perm[7:].tolist()


def test_subsets_take_first_k(syn):
    s = data.load("synthetic", "u", heldout=100, seed=3, train_subset=50, test_subset=20, options=SMALL)
    assert s.train_indices == syn.train_indices[:50]
    assert torch.equal(s.targets("test"), syn.targets("test")[:20])
    assert s.heldout_indices == syn.heldout_indices


def test_synthetic_deterministic_and_configurable():
    a = data.load("synthetic", "u", heldout=10, seed=0, options={**SMALL, "num_classes": 5, "image_size": 16})
    b = data.load("synthetic", "u", heldout=10, seed=0, options={**SMALL, "num_classes": 5, "image_size": 16})
    assert a.input_size == (3, 16, 16) and a.num_classes == 5
    assert torch.equal(a.images("train"), b.images("train"))
    assert set(a.targets("test").tolist()) == set(range(5))
    c = data.load("synthetic", "u", heldout=10, seed=0, options={**SMALL, "data_seed": 1})
    assert not torch.equal(c.images("test"), a.images("test"))
    # the training images do not depend on test_size
    d = data.load("synthetic", "u", heldout=10, seed=0, options={**SMALL, "num_classes": 5, "image_size": 16, "test_size": 7})
    assert torch.equal(d.images("train"), a.images("train"))


def test_synthetic_difficulty_varies():
    s = data.load("synthetic", "u", heldout=10, seed=0, options={"train_size": 20, "test_size": 1000})
    x = (s.images("test").float() - 128) / 48
    y, d = s.targets("test"), s.difficulty("test")
    pred = torch.einsum("nchw,kchw->nk", x, s.prototypes).argmax(1)  # nearest prototype
    easy = d < d.median()
    acc_easy = (pred == y)[easy].float().mean().item()
    acc_hard = (pred == y)[~easy].float().mean().item()
    assert acc_easy > 0.95 and acc_hard < 0.8 and acc_easy - acc_hard > 0.2


def test_batches_deterministic_and_epoch_dependent(syn):
    def first(**kw):
        return next(iter(syn.batches("train", 32, **kw)))
    x1, y1 = first(epoch=1, seed=5)
    x2, y2 = first(epoch=1, seed=5)
    x3, y3 = first(epoch=2, seed=5)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(y1, y3)
    assert x1.shape == (32, 3, 32, 32) and x1.dtype == torch.float32 and y1.dtype == torch.int64


def test_train_epoch_covers_train_split(syn):
    ys = torch.cat([y for _, y in syn.batches("train", 64, drop_last=False)])
    assert len(ys) == 500
    assert sorted(ys.tolist()) == sorted(syn.targets("train").tolist())
    assert syn.num_batches("train", 64) == 7 == len(list(syn.batches("train", 64)))
    assert syn.num_batches("train", 64, drop_last=False) == 8
    assert syn.num_batches("train", 1000) == 1  # fewer than one batch: keep the partial one


def test_eval_batches_fixed_order_unaugmented(syn):
    for split in ("heldout", "test"):
        xs, ys = zip(*syn.batches(split, 64))
        x, y = torch.cat(xs), torch.cat(ys)
        assert torch.equal(y, syn.targets(split))
        assert torch.allclose(x, syn.normalize(syn.images(split)))
        assert len(xs) == syn.num_batches(split, 64)


def test_heldout_not_augmented_train_is(syn):
    x_tr = next(iter(syn.batches("train", 200, drop_last=False)))[0]
    plain = data.load("synthetic", "u", heldout=100, seed=3, options={**SMALL, "augment": False})
    x_plain = next(iter(plain.batches("train", 200, drop_last=False)))[0]
    # augmentation = zero-padded crop: some pixels are padding (uint8 0) only when augmented
    pad_value = (0 - syn.mean[0]) / syn.std[0]
    assert (x_tr[:, 0] == pad_value).any(dim=(1, 2)).float().mean() > 0.5
    assert x_plain.shape == x_tr.shape
    assert torch.allclose(x_plain, plain.normalize(plain.images("train")[
        torch.randperm(500, generator=torch.Generator().manual_seed(sp.mix_seed(0, 0)))[:200]]))
