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


def test_the_papers_curves_are_published_entries():
    pub = boostnet()
    assert pub.anytime_top1 == tuple(paper.ANYTIME_TOP1["BoostNet"])
    assert pub.budgeted_top1 == paper.BUDGETED_TOP1["BoostNet"]
    assert pub.protocol.dataset == paper.DATASET and pub.protocol.backbone == paper.BACKBONE
    assert set(paper.PUBLISHED) == {"MSDNet", "BoostNet", "L2W-DEN"}
    assert paper.PUBLISHED["L2W-DEN"][0].anytime_top1[-1] == 73.93


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
