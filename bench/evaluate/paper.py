"""Reference numbers of the BoostNet paper (AAAI 2023), drawn beside our results.

Read off the reference repository's README figures (see docs/paper.md). The paper's MMACs
come from the reference counter (conv/linear multiply-adds plus ReLU and pooling, no
BatchNorm), not fvcore; the two differ by about 0.5%. The paper's "MSDNet" is the plain
joint-loss training of the same backbone. Which of a suite's methods stands beside which
curve is the methods' own knowledge (``methods.paper_curve``), recorded in suite.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOURCE = "Yu et al., Boosted Dynamic Neural Networks, AAAI 2023 (reference README figures)"

# The paper's protocol: CIFAR-100 with MSDNet, nBlocks 10 (anytime prediction).
DATASET = "cifar100"
BACKBONE = "msdnet10_cifar"

# Anytime prediction: MMACs per exit (reference counter) and top-1 % per exit.
ANYTIME_MMACS = [15.14, 25.51, 37.79, 52.06, 62.18, 74.07, 87.73, 100.04, 110.12, 121.68]
ANYTIME_TOP1 = {
    "MSDNet": [64.60, 67.94, 69.35, 71.52, 72.75, 74.03, 74.64, 75.36, 75.52, 75.97],
    "BoostNet": [65.32, 70.00, 72.33, 74.14, 75.23, 75.84, 75.93, 76.50, 76.53, 76.31],
}

# Budgeted batch classification: top-1 % at an average budget in MMACs.
BUDGETED_TOP1 = {
    "MSDNet": {20: 70.02, 30: 73.24, 40: 73.79, 50: 74.59, 60: 74.94},
    "BoostNet": {20: 70.38, 30: 74.32, 40: 75.18, 50: 75.52, 60: 75.74},
}


def follows_protocol(dataset: str | None, backbone: str | None) -> bool:
    """True where a suite's numbers are comparable to the paper's (CIFAR-100, MSDNet-10)."""
    return (dataset or "").lower() == DATASET and backbone == BACKBONE


# -- Published numbers with their protocols (the leaderboard) ---------------------------
# A published number stands beside ours only where our run followed the same protocol:
# data set, backbone, epochs, optimizer and schedule, the split thresholds are fitted on,
# how checkpoints are chosen, and the exit rule. Each difference is named on the page.

@dataclass(frozen=True)
class Protocol:
    dataset: str
    backbone: str  # the harness's registry name of the same architecture
    epochs: int
    lr: float
    schedule: str  # step | cosine
    milestones: tuple[float, ...] | None  # step: fractions of the epochs
    batch_size: int | None  # per process as our configs hold it; None: not compared
    heldout: int | None  # training images held out to fit thresholds; None: not held out
    threshold_split: str  # where the thresholds were fitted, in words
    checkpoint: str | None  # how the evaluated checkpoint was chosen; None: not stated
    rule: tuple[str, str, str] = ("none", "max_softmax", "per exit")  # combiner, criterion, fit


@dataclass(frozen=True)
class Published:
    curve: str  # the name a method declares (methods.paper_curve) and suite.json records
    source: str
    protocol: Protocol
    anytime_mmacs: tuple[float, ...] = ()  # per exit, the source's counter
    anytime_top1: tuple[float, ...] = ()
    budgeted_top1: dict = field(default_factory=dict)  # budget (MMACs) -> top-1 %
    note: str = ""


_BOOSTNET_CIFAR = Protocol(
    dataset=DATASET, backbone=BACKBONE, epochs=300, lr=0.1, schedule="step",
    milestones=(0.5, 0.75), batch_size=64, heldout=5000,
    threshold_split="5,000 images held out of the training set", checkpoint=None)
_BOOSTNET_NOTE = ("MMACs from the reference counter (about 0.5% below fvcore's); how the "
                  "checkpoint was chosen is not stated in the source read.")

# L2W-DEN (Han et al., ECCV 2022), README table of pre-trained ImageNet models: MSDNet with
# 5 exits, step = base = 4, 100 epochs, batch 4096 (8 GPUs), lr 0.8 cosine; the "best"
# checkpoint is chosen on the validation (test) set; anytime accuracy only.
_L2W_IMAGENET = Protocol(
    dataset="imagenet", backbone="msdnet_step4_imagenet", epochs=100, lr=0.8,
    schedule="cosine", milestones=None, batch_size=512, heldout=None,
    threshold_split="the augmented training set", checkpoint="best on the test set")

PUBLISHED: dict[str, list[Published]] = {
    name: [Published(name, SOURCE, _BOOSTNET_CIFAR, tuple(ANYTIME_MMACS),
                     tuple(ANYTIME_TOP1[name]), dict(BUDGETED_TOP1[name]), _BOOSTNET_NOTE)]
    for name in ANYTIME_TOP1}
PUBLISHED["L2W-DEN"] = [Published(
    "L2W-DEN", "Han et al., Learning to Weight Samples for Dynamic Early-exiting Networks, "
    "ECCV 2022 (LeapLabTHU/L2W-DEN README, step=4, 100 epochs)", _L2W_IMAGENET,
    anytime_top1=(59.54, 67.22, 71.03, 72.33, 73.93),
    note="anytime top-1 per exit only; no MMACs given beside them.")]


def protocol_differences(protocol: Protocol, config: dict, rule: tuple[str, str, str] | None
                         = None, anytime: bool = False) -> list[str]:
    """How a run (its config.json) departs from a published protocol, one phrase per
    difference ("epochs 30 vs 300"); empty where the numbers are comparable. ``rule``:
    (combiner, criterion, fit) of our number; ``anytime``: an anytime number (no thresholds,
    so the threshold split and the rule do not matter)."""
    ds, tr = config.get("dataset") or {}, config.get("training") or {}
    bb, sched = config.get("backbone") or {}, tr.get("schedule") or {}
    ours = {
        "data set": (ds.get("name"), protocol.dataset),
        "backbone": (bb.get("name") if not bb.get("overrides") else
                     f"{bb.get('name')} with overrides", protocol.backbone),
        "epochs": (tr.get("epochs"), protocol.epochs),
        "learning rate": ((tr.get("optimizer") or {}).get("lr"), protocol.lr),
        "schedule": (_schedule(sched.get("name"), sched.get("milestones")),
                     _schedule(protocol.schedule, protocol.milestones)),
        "checkpoint": ("last epoch", protocol.checkpoint),
    }
    if protocol.batch_size is not None:
        ours["batch size per process"] = (tr.get("batch_size"), protocol.batch_size)
    if not anytime:
        ours["thresholds fitted on"] = (_split(ds.get("heldout")), protocol.threshold_split
                                        if protocol.heldout is None
                                        else _split(protocol.heldout))
        if rule is not None:
            ours["exit rule"] = (" / ".join(rule), " / ".join(protocol.rule))
    return [f"{key} {_text(a)} vs {_text(b)}" for key, (a, b) in ours.items()
            if b is not None and not _same(a, b)]


def _schedule(name, milestones) -> str:
    if name == "step" and milestones:
        return "step at " + ", ".join(f"{m:g}" for m in milestones)
    return str(name)


def _split(heldout) -> str:
    return f"{heldout:,} images held out of the training set" if heldout else "no held-out split"


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    return a == b


def _text(v) -> str:
    return "?" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
