"""Reference numbers of the BoostNet paper (AAAI 2023), drawn beside our results.

Read off the reference repository's README figures (see docs/method.md). The paper's MMACs
come from the reference counter (conv/linear multiply-adds plus ReLU and pooling, no
BatchNorm), not fvcore; the two differ by about 0.5%. The paper's "MSDNet" is the plain
joint-loss training of the same backbone. Which of a suite's methods stands beside which
curve is the methods' own knowledge (``methods.paper_curve``), recorded in suite.json.
"""

from __future__ import annotations

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
