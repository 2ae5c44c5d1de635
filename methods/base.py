"""The method interface and its registry.

A method is a class registered under a name. It declares its options (``OPTIONS``) and
where ``tuned`` may search them (``SEARCH_SPACE``), and says what each exit predicts with
(``combine``), what each exit's loss sees (``train_logits``) and how training is staged
(``stages``). The base class is itself a complete method (plain joint training): a subclass
that overrides only ``combine`` is a complete method too.

Methods that need more override, each with a default that changes nothing:

- modules: ``build_modules(model)`` returns :class:`methods.heads.ExitHeads` that
  ``install`` attaches to the model (they take over the exits' final linear layers, run
  inside the forward and are counted by fvcore); ``analytic_macs`` adds per-exit work
  fvcore does not see;
- stages: :class:`Stage` says what trains (``trains``), the batch-norm policy of frozen
  parts and the epoch share; ``configure(model, stage)`` is called at each stage's start
  (and with None once training is over: the inference configuration);
  ``stage_sample_losses`` is the stage's loss;
- the step: ``train_step(ctx, x, y)`` does one loaded batch (default: one forward, the
  stage's loss, one backward, one SGD step); ``passes(stage)`` declares its work and
  ``graph_blocker(stage)`` why it cannot be recorded as a CUDA graph, if it cannot;
  ``begin_training``, ``training_state`` and ``load_training_state`` carry state of the
  method's own (another optimizer) through checkpoints;
- after training: ``post_training_split`` names the split whose raw logits
  ``fit_post_training`` fits small parameters on (never the test split).
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.registry import Registry
from methods.heads import ExitHeads, attach, modules_of
from methods.options import NUMBER_OR_NUMBERS, NUMBERS, Option, OptionError, Range
from methods.training import Passes, Stage, StepContext, split_epochs  # noqa: F401

METHODS: Registry[type["Method"]] = Registry("method")

LOSS_WEIGHTS = Option("loss_weights", NUMBERS, None,
                      "per-exit loss weights w_n of sum_n w_n CE_n (null: 1 for every exit)")


def register(name: str):
    """Class decorator registering a method under ``name``; its declarations are checked."""

    def wrap(cls):
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered")
        _check_declarations(name, cls)
        cls.name = name
        return METHODS.add(name, cls)

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
    return METHODS.names()


def _get(name: str) -> type["Method"]:
    return METHODS.get(name)


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
    """The BoostNet paper's curve (bench.evaluate.paper) this method's reference variant reproduces."""
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
        self.exit_heads: ExitHeads | None = None  # the installed modules (see install)

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

    def regime_refusal(self, regime: str) -> str | None:
        """Why training regime ``regime`` ('disjoint' or 'mixed', methods.regimes) has no
        meaning for this method as configured, or None. The base refuses gradient rescaling
        under disjoint: it rescales the gradients that reach the backbone, which disjoint
        freezes (the heads' own gradients are not rescaled)."""
        if regime == "disjoint" and self.grad_rescale:
            return ("gradient rescaling acts on the gradients that reach the backbone, which "
                    "disjoint freezes; give options.grad_rescale: false")
        return None

    # -- modules ----------------------------------------------------------------------
    def build_modules(self, model: nn.Module) -> ExitHeads | None:
        """The method's modules for ``model`` (None: the backbone as it is)."""
        return None

    def analytic_macs(self, num_exits: int, num_classes: int) -> list[int]:
        """Per exit, MACs for one image that the method adds outside the traced forward
        (fvcore cannot see them), e.g. an ensemble in ``combine``; not cumulative."""
        return [0] * num_exits

    def install(self, model: nn.Module) -> nn.Module:
        """Make ``model`` this method's: gradient rescaling, and the method's modules built
        and attached as ``model.method_modules`` (once: a model that has them keeps them).
        Returns the model."""
        self.prepare(model)
        current = modules_of(model)
        if current is None:
            heads = self.build_modules(model)
            if heads is not None:
                heads.method_name = self.name
                attach(model, heads)
                current = heads
        elif getattr(current, "method_name", None) != self.name:
            raise ValueError(f"the model carries the modules of method "
                             f"{getattr(current, 'method_name', '?')!r}, not {self.name!r}'s")
        self.exit_heads = current
        self.configure(model, None)
        return model

    def configure(self, model: nn.Module, stage: int | None) -> None:
        """Called at the start of stage ``stage`` (0-based, also when a run resumes inside
        it) and with None once training is over or when the model only predicts."""

    # -- training -----------------------------------------------------------------------
    def stage_sample_losses(self, outs: Sequence[Tensor], targets: Tensor, stage: Stage
                            ) -> Tensor:
        """Per-sample loss of every computed exit in ``stage``, [N, B]; the stage's loss is
        ``loss_from_samples`` of it over the active exits."""
        return self.sample_losses(outs, targets)

    def train_step(self, ctx: StepContext, x: Tensor, y: Tensor) -> Tensor:
        """One loaded batch: forward, the stage's loss, backward, SGD step. Returns the
        per-sample losses [exits computed, B], detached, for the history."""
        with ctx.autocast:
            outs = ctx.net(x, num_exits=ctx.stage.reach)
            sample_losses = self.stage_sample_losses([o.float() for o in outs], y, ctx.stage)
            loss = self.loss_from_samples(sample_losses, ctx.stage.active_exits)
        ctx.check_finite(loss, sample_losses)
        ctx.step(loss)
        return sample_losses.detach()

    def passes(self, stage: Stage) -> Passes:
        """The work of one ``train_step`` in ``stage`` (the training-cost record)."""
        return Passes()

    def graph_blocker(self, stage: Stage) -> str | None:
        """Why a ``train_step`` of ``stage`` cannot be recorded once as a CUDA graph and
        replayed (``training.cuda_graphs``), or None: it can. A step can be recorded when
        it does the same GPU work for every batch of one shape and never waits for the
        GPU: no ``.item()`` or ``bool(tensor)``, no branch on data or on a step counter,
        no optimizer of its own whose learning rate changes. The default step can (its
        ``ctx.check_finite`` is called, and only keeps the loss, while it is recorded)."""
        return None

    def begin_training(self, model: nn.Module, device: torch.device) -> None:
        """Build what only training needs (another optimizer, say) before the first step."""

    def training_state(self) -> dict:
        """State of the method's own that a checkpoint must carry for an exact resume."""
        return {}

    def load_training_state(self, state: dict) -> None:
        if state:
            raise ValueError(f"method {self.name!r} keeps no training state, the checkpoint "
                             f"has {sorted(state)}")

    # -- after training -----------------------------------------------------------------
    def post_training_split(self) -> str | None:
        """The split whose raw exit logits ``fit_post_training`` needs ('train', with
        training augmentation, or 'heldout'; never 'test'), or None: no such phase."""
        return None

    def post_training_done(self) -> bool:
        return True

    def fit_post_training(self, logits: Tensor, targets: Tensor, seed: int) -> None:
        """Fit the method's small parameters on raw logits [N, M, C] and targets [M]."""
        raise NotImplementedError(f"method {self.name!r} has no post-training phase")

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
    return [Stage((n,), (n,) if freeze_previous else tuple(range(n + 1)), share,
                  name=f"exit {n + 1}") for n in range(num_exits)]


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

    def regime_refusal(self, regime: str) -> str | None:
        if regime == "disjoint" and not self.joint:
            return ("its stages train exit n's block and head in turn, the last stage the "
                    "last exit alone, which disjoint freezes with the backbone")
        return super().regime_refusal(regime)


def temperature_option(default: float) -> Option:
    return Option("temperature", NUMBER_OR_NUMBERS, default,
                  "ensemble temperature t_n of F_n = t_n F_{n-1} + f_n: one value, or one per "
                  "exit (t_1..t_N or t_2..t_N)")


# BoostNet's temperature search (paper default t = 0.5 inside it): log-uniform, one shared
# t or one per exit t_2..t_N (t_1 multiplies F_0 = 0 and never matters).
TEMPERATURE_RANGE = Range(0.05, 2.0, log=True, per_exit=False, per_exit_param="t_{n}",
                          first_exit=2)
