"""Plain joint-loss EDNN training (MSDNet, RANet): F_n = f_n, L = sum_n w_n CE(f_n, y)."""
from __future__ import annotations

from methods.base import Method, register


@register("joint")
class Joint(Method):
    """Every exit predicts with its own head; one backward over the summed losses. The
    base method as it is: the paper's "MSDNet" curves are this training."""

    PAPER_CURVE = "MSDNet"
