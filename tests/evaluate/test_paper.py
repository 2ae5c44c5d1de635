"""bench.evaluate.paper: published numbers and when a run's protocol matches theirs."""
import pytest

from bench.evaluate import paper

PAPER_RUN = {  # config.json of a run on the BoostNet paper's CIFAR-100 protocol
    "dataset": {"name": "cifar100", "heldout": 5000},
    "backbone": {"name": "msdnet10_cifar", "label": "msdnet10_cifar", "overrides": {}},
    "training": {"epochs": 300, "batch_size": 64,
                 "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                 "schedule": {"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1}},
}
DEFAULT_RULE = ("none", "max_softmax", "per exit")


def boostnet():
    (pub,) = paper.PUBLISHED["BoostNet"]
    return pub


def with_(**changes):
    config = {k: dict(v) for k, v in PAPER_RUN.items()}
    for path, value in changes.items():
        section, key = path.split("__")
        config[section][key] = value
    return config


# Typed from the BoostNet paper (Yu et al., AAAI 2023), CIFAR-100 with MSDNet: top-1 % of
# exits 1..10, the reference counter's MMACs per exit, and budgeted top-1 % at mean budgets.
TYPED_MMACS = (15.14, 25.51, 37.79, 52.06, 62.18, 74.07, 87.73, 100.04, 110.12, 121.68)
TYPED_ANYTIME = {
    "MSDNet": (64.60, 67.94, 69.35, 71.52, 72.75, 74.03, 74.64, 75.36, 75.52, 75.97),
    "BoostNet": (65.32, 70.00, 72.33, 74.14, 75.23, 75.84, 75.93, 76.50, 76.53, 76.31),
}
TYPED_BUDGETED = {
    "MSDNet": {20: 70.02, 30: 73.24, 40: 73.79, 50: 74.59, 60: 74.94},
    "BoostNet": {20: 70.38, 30: 74.32, 40: 75.18, 50: 75.52, 60: 75.74},
}


@pytest.mark.parametrize("curve", ["MSDNet", "BoostNet"])
def test_the_papers_numbers_are_published_as_printed(curve):
    (pub,) = paper.PUBLISHED[curve]
    assert pub.curve == curve
    assert pub.anytime_mmacs == TYPED_MMACS
    assert pub.anytime_top1 == TYPED_ANYTIME[curve]
    assert pub.budgeted_top1 == TYPED_BUDGETED[curve]
    assert pub.protocol.dataset == "cifar100" and pub.protocol.backbone == "msdnet10_cifar"
    assert pub.protocol.heldout == 5000 and pub.protocol.epochs == 300
    # the module's tables the report draws from hold the same numbers
    assert tuple(paper.ANYTIME_MMACS) == TYPED_MMACS
    assert tuple(paper.ANYTIME_TOP1[curve]) == TYPED_ANYTIME[curve]
    assert paper.BUDGETED_TOP1[curve] == TYPED_BUDGETED[curve]


def test_l2w_is_published_with_its_own_protocol():
    # typed from LeapLabTHU/L2W-DEN's README, "Pre-trained Models on ImageNet", step=4, 100
    # epochs: acc_exit1..5
    assert set(paper.PUBLISHED) == {"MSDNet", "BoostNet", "L2W-DEN"}
    (pub,) = paper.PUBLISHED["L2W-DEN"]
    assert pub.anytime_top1 == (59.54, 67.22, 71.03, 72.33, 73.93) and not pub.budgeted_top1
    assert pub.protocol.dataset == "imagenet" and pub.protocol.heldout is None


def test_the_papers_protocol_is_comparable():
    assert paper.protocol_differences(boostnet().protocol, PAPER_RUN, DEFAULT_RULE) == []
    assert paper.protocol_differences(boostnet().protocol, PAPER_RUN, anytime=True) == []


@pytest.mark.parametrize("changes,difference", [
    ({"dataset__name": "cifar10"}, "data set cifar10 vs cifar100"),
    ({"backbone__name": "ranet8_cifar"}, "backbone ranet8_cifar vs msdnet10_cifar"),
    ({"backbone__overrides": {"growth_rate": 8}},
     "backbone msdnet10_cifar with overrides vs msdnet10_cifar"),
    ({"training__epochs": 30}, "epochs 30 vs 300"),
    ({"training__batch_size": 128}, "batch size per process 128 vs 64"),
    ({"training__optimizer": {"lr": 0.05}}, "learning rate 0.05 vs 0.1"),
    ({"training__schedule": {"name": "cosine"}}, "schedule cosine vs step at 0.5, 0.75"),
    ({"training__schedule": {"name": "step", "milestones": [0.3, 0.6]}},
     "schedule step at 0.3, 0.6 vs step at 0.5, 0.75"),
    ({"dataset__heldout": 1000}, "thresholds fitted on 1,000 images held out of the training "
                                 "set vs 5,000 images held out of the training set"),
])
def test_each_difference_is_named(changes, difference):
    assert paper.protocol_differences(boostnet().protocol, with_(**changes), DEFAULT_RULE) == \
        [difference]


def test_the_exit_rule_and_split_matter_for_budgets_only():
    protocol = boostnet().protocol
    other = ("product", "entropy", "global")
    assert paper.protocol_differences(protocol, PAPER_RUN, other) == [
        "exit rule product / entropy / global vs none / max_softmax / per exit"]
    assert paper.protocol_differences(protocol, with_(dataset__heldout=1000), other,
                                      anytime=True) == []


def test_l2w_is_never_comparable_with_the_harness_recipe():
    (pub,) = paper.PUBLISHED["L2W-DEN"]
    run = {"dataset": {"name": "imagenet", "heldout": 50000},
           "backbone": {"name": "msdnet_step4_imagenet", "overrides": {}},
           "training": {"epochs": 100, "batch_size": 512, "optimizer": {"lr": 0.8},
                        "schedule": {"name": "cosine"}}}
    # the harness evaluates the last epoch; L2W-DEN's models are the best on the test set
    assert paper.protocol_differences(pub.protocol, run, anytime=True) == [
        "checkpoint last epoch vs best on the test set"]
