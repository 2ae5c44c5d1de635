"""The method interface, its registry, and the boosted ensemble shared by two methods."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_REGISTRY: dict[str, Callable[..., "Method"]] = {}


def register(name: str):
    """Class decorator registering a method under ``name``."""

    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def option_names(name: str) -> list[str]:
    """The options ``create(name, ...)`` accepts."""
    return [p for p in inspect.signature(_get(name)).parameters]


def _get(name: str):
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name]


def create(name: str, **options) -> "Method":
    unknown = sorted(set(options) - set(option_names(name)))
    if unknown:
        raise ValueError(f"method {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"options: {', '.join(option_names(name))}")
    return _get(name)(**options)


@dataclass(frozen=True)
class Stage:
    """One training stage: exits are 0-based indices."""

    active_exits: tuple[int, ...]  # exits whose losses are summed
    trainable_exits: tuple[int, ...]  # exits whose parameter groups train (others frozen)
    epoch_share: float  # share of the run's epochs


def split_epochs(total: int, stages: Sequence[Stage]) -> list[int]:
    """Whole epochs per stage, proportional to the shares (largest remainder first)."""
    if total < len(stages):
        raise ValueError(f"{len(stages)} training stages need at least {len(stages)} epochs, "
                         f"got {total}")
    exact = [total * s.epoch_share for s in stages]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(stages)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


class Method:
    """Base method: joint training of raw head logits, F_n = f_n.

    Subclasses change ``combine`` (what each exit predicts with), ``train_logits`` (what each
    exit's loss sees) and ``stages``.
    """

    name = "base"
    grad_rescale = False

    def __init__(self, loss_weights: Sequence[float] | None = None):
        self.loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]

    def options(self) -> dict:
        return {"loss_weights": self.loss_weights}

    def weights(self, num_exits: int) -> list[float]:
        if self.loss_weights is None:
            return [1.0] * num_exits
        if len(self.loss_weights) != num_exits:
            raise ValueError(f"loss_weights has {len(self.loss_weights)} values for a backbone "
                             f"with {num_exits} exits")
        return self.loss_weights

    def combine(self, outs: Sequence[Tensor]) -> list[Tensor]:
        return list(outs)

    def train_logits(self, outs: Sequence[Tensor]) -> list[Tensor]:
        return list(outs)

    def sample_losses(self, outs: Sequence[Tensor], targets: Tensor) -> Tensor:
        """Per-sample cross-entropy of every exit's training objective, shape [N, B]."""
        return torch.stack([F.cross_entropy(z, targets, reduction="none")
                            for z in self.train_logits(outs)])

    def loss(self, outs: Sequence[Tensor], targets: Tensor,
             active: Sequence[int] | None = None) -> Tensor:
        """sum_n w_n CE_n over the active exits (all by default), each CE a batch mean."""
        return self.loss_from_samples(self.sample_losses(outs, targets), active)

    def loss_from_samples(self, sample_losses: Tensor, active: Sequence[int] | None = None
                          ) -> Tensor:
        w = self.weights(sample_losses.shape[0])
        exits = range(sample_losses.shape[0]) if active is None else active
        return sum(w[n] * sample_losses[n].mean() for n in exits)

    def stages(self, num_exits: int) -> list[Stage]:
        everything = tuple(range(num_exits))
        return [Stage(everything, everything, 1.0)]

    def prepare(self, model: nn.Module) -> None:
        """Install this method's gradient rescaling on ``model`` (on or off)."""
        if not hasattr(model, "grad_rescale"):
            if self.grad_rescale:
                raise ValueError(f"{type(model).__name__} does not support gradient rescaling")
            return
        model.grad_rescale = self.grad_rescale


def stagewise(num_exits: int, freeze_previous: bool) -> list[Stage]:
    """Stage n trains on exit n's loss alone; earlier exits frozen or still training."""
    share = 1.0 / num_exits
    return [Stage((n,), (n,) if freeze_previous else tuple(range(n + 1)), share)
            for n in range(num_exits)]


class BoostedEnsemble(Method):
    """F_n = t_n F_{n-1} + f_n with F_0 = 0 (paper Eq. 8); exit n trains on
    CE(t_n sg(F_{n-1}) + f_n, y) (paper Eq. 5 with the temperature of Eq. 8)."""

    def __init__(self, temperature: float | Sequence[float] = 0.5,
                 loss_weights: Sequence[float] | None = None, *, joint: bool = True,
                 freeze_previous: bool = True, grad_rescale: bool = False):
        super().__init__(loss_weights)
        self.temperature = temperature
        self.joint = bool(joint)
        self.freeze_previous = bool(freeze_previous)
        self.grad_rescale = bool(grad_rescale)

    def options(self) -> dict:
        return {**super().options(), "temperature": self.temperature, "joint": self.joint,
                "freeze_previous": self.freeze_previous, "grad_rescale": self.grad_rescale}

    def temperatures(self, num_exits: int) -> list[float]:
        """t_1..t_N; t_1 multiplies F_0 = 0 and so never matters. A list may give N values
        or the N-1 values t_2..t_N."""
        t = self.temperature
        if isinstance(t, (int, float)):
            return [float(t)] * num_exits
        t = [float(v) for v in t]
        if len(t) == num_exits - 1:
            return [0.0] + t
        if len(t) == num_exits:
            return t
        raise ValueError(f"temperature has {len(t)} values; a backbone with {num_exits} exits "
                         f"takes {num_exits} (t_1..t_N) or {num_exits - 1} (t_2..t_N)")

    def combine(self, outs: Sequence[Tensor]) -> list[Tensor]:
        t = self.temperatures(len(outs))
        ensemble = [outs[0]]
        for n in range(1, len(outs)):
            ensemble.append(t[n] * ensemble[-1] + outs[n])
        return ensemble

    def train_logits(self, outs: Sequence[Tensor]) -> list[Tensor]:
        t = self.temperatures(len(outs))
        previous = self.combine([o.detach() for o in outs])  # sg(F_n), no graph kept
        return [outs[0]] + [t[n] * previous[n - 1] + outs[n] for n in range(1, len(outs))]

    def stages(self, num_exits: int) -> list[Stage]:
        if self.joint:
            return super().stages(num_exits)
        return stagewise(num_exits, self.freeze_previous)
