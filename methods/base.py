"""The method interface and its registry.

A method is a class registered under a name. It declares its options (``OPTIONS``) and
where ``tuned`` may search them (``SEARCH_SPACE``), and says what each exit predicts with
(``combine``), what each exit's loss sees (``train_logits``) and how training is staged
(``stages``). The base class is itself a complete method (plain joint training): a subclass
that overrides only ``combine`` is a complete method too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.options import NUMBER_OR_NUMBERS, NUMBERS, Option, OptionError, Range

_REGISTRY: dict[str, type["Method"]] = {}

LOSS_WEIGHTS = Option("loss_weights", NUMBERS, None,
                      "per-exit loss weights w_n of sum_n w_n CE_n (null: 1 for every exit)")


def register(name: str):
    """Class decorator registering a method under ``name``; its declarations are checked."""

    def wrap(cls):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _check_declarations(name, cls)
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _check_declarations(name: str, cls) -> None:
    option_names = [o.name for o in cls.OPTIONS]
    if len(set(option_names)) != len(option_names):
        raise ValueError(f"method {name!r} declares an option twice: {option_names}")
    for o in cls.OPTIONS:
        if callable(getattr(cls, o.name, None)):
            raise ValueError(f"method {name!r}: option {o.name!r} would hide the method "
                             f"{cls.__name__}.{o.name}")
        o.check(o.default)  # a default of the wrong kind is the method's bug
    for option, rng in cls.SEARCH_SPACE.items():
        if option not in option_names or not isinstance(rng, Range):
            raise ValueError(f"method {name!r}: SEARCH_SPACE[{option!r}] must be a Range of "
                             f"a declared option ({', '.join(option_names)})")


def names() -> list[str]:
    return sorted(_REGISTRY)


def _get(name: str) -> type["Method"]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name]


def options_of(name: str) -> tuple[Option, ...]:
    """The options ``create(name, ...)`` accepts, in their declared order."""
    return tuple(_get(name).OPTIONS)


def option_names(name: str) -> list[str]:
    return [o.name for o in options_of(name)]


def defaults(name: str) -> dict[str, Any]:
    """Every option's default: the method's reference configuration."""
    return {o.name: o.default for o in options_of(name)}


def search_space(name: str) -> dict[str, Range]:
    """The options ``tuned`` may be used for, with their default search ranges."""
    return dict(_get(name).SEARCH_SPACE)


def paper_curve(name: str) -> str | None:
    """The BoostNet paper's curve (bench.paper) this method's reference variant reproduces."""
    return _get(name).PAPER_CURVE


def create(name: str, **options) -> "Method":
    """The method ``name`` with ``options`` (unset ones take their defaults). Raises
    OptionError naming the method and the option for unknown options or bad values."""
    cls = _get(name)
    try:
        return cls(**options)
    except OptionError as err:
        raise OptionError(err.option, f"method {name!r}: {err}", expected=err.expected,
                          value=err.value, index=err.index) from None


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
    """Base method: joint training of the raw head logits, F_n = f_n (one stage, every
    exit's loss summed with weights ``loss_weights``, nothing to tune).

    Subclasses change ``combine`` (what each exit predicts with), ``train_logits`` (what each
    exit's loss sees) and ``stages``; they declare their options in ``OPTIONS`` (every
    option becomes an attribute) and the tunable ones in ``SEARCH_SPACE``.
    """

    name = "base"
    OPTIONS: ClassVar[tuple[Option, ...]] = (LOSS_WEIGHTS,)
    SEARCH_SPACE: ClassVar[dict[str, Range]] = {}
    PAPER_CURVE: ClassVar[str | None] = None  # see paper_curve()
    grad_rescale = False

    def __init__(self, **options):
        declared = {o.name: o for o in self.OPTIONS}
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise OptionError(unknown[0], f"no option {', '.join(map(repr, unknown))}; "
                                          f"options: {', '.join(declared)}")
        for name, option in declared.items():
            setattr(self, name, option.check(options.get(name, option.default)))

    def options(self) -> dict:
        """Every option's value."""
        return {o.name: getattr(self, o.name) for o in self.OPTIONS}

    def weights(self, num_exits: int) -> list[float]:
        if self.loss_weights is None:
            return [1.0] * num_exits
        if len(self.loss_weights) != num_exits:
            raise OptionError("loss_weights", f"loss_weights has {len(self.loss_weights)} "
                                              f"values for a backbone with {num_exits} exits")
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
                raise OptionError("grad_rescale", f"{type(model).__name__} does not support "
                                                  "gradient rescaling")
            return
        model.grad_rescale = self.grad_rescale


def stagewise(num_exits: int, freeze_previous: bool) -> list[Stage]:
    """Stage n trains on exit n's loss alone; earlier exits frozen or still training."""
    share = 1.0 / num_exits
    return [Stage((n,), (n,) if freeze_previous else tuple(range(n + 1)), share)
            for n in range(num_exits)]


class BoostedEnsemble(Method):
    """F_n = t_n F_{n-1} + f_n with F_0 = 0 (paper Eq. 8); exit n trains on
    CE(t_n sg(F_{n-1}) + f_n, y) (paper Eq. 5 with the temperature of Eq. 8).

    Subclasses declare ``temperature`` (and ``freeze_previous``) options or fix them as
    class attributes, like ``joint`` and ``grad_rescale``."""

    joint = True
    freeze_previous = True

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
        raise OptionError("temperature", f"temperature has {len(t)} values; a backbone with "
                                         f"{num_exits} exits takes {num_exits} (t_1..t_N) or "
                                         f"{num_exits - 1} (t_2..t_N)")

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


def temperature_option(default: float) -> Option:
    return Option("temperature", NUMBER_OR_NUMBERS, default,
                  "ensemble temperature t_n of F_n = t_n F_{n-1} + f_n: one value, or one per "
                  "exit (t_1..t_N or t_2..t_N)")


# BoostNet's temperature search (paper default t = 0.5 inside it): log-uniform, one shared
# t or one per exit t_2..t_N (t_1 multiplies F_0 = 0 and never matters).
TEMPERATURE_RANGE = Range(0.05, 2.0, log=True, per_exit=False, per_exit_param="t_{n}",
                          first_exit=2)
