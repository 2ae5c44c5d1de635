"""The suite schema, declared once: each key's type, bounds, default and description
(docs/suite-schema.md lists them).

Sections are frozen pydantic models; unknown keys are errors and a null value takes the
default. Names and options that the registries own are checked by asking them (data sets,
backbones, methods, exit rules; a suite's plugins are imported first). What needs a
backbone built (costs, budgets, per-exit options) is checked as the suite expands into runs.
"""
import functools
from typing import Annotated, Any, Mapping, Optional

from pydantic import (AfterValidator, Field, PlainValidator, create_model, field_validator,
                      model_validator)

import methods
from bench import backbones, data
from bench.config import tune as tuning
from bench.config.executor import ExecutorConfig
from bench.config.tune import Seed, TuneConfig
from bench.config.types import (JSON, AnyText, Choice, Config, Flag, FlagOrWord, Free, Int,
                                Items, Key, Known, Matching, Number, OneOf, Text, expect, fail,
                                freeze, plain, thaw)
from bench.engine.precision import PRECISIONS
from bench.evaluate import combiners as exit_combiners
from bench.evaluate import criteria as exit_criteria
from bench.evaluate import conformal as exit_conformal
from bench.evaluate import risk as exit_risk
from bench.evaluate import risk_validity as exit_validity

TUNED = "tuned"  # an option value: the suite's Optuna study chooses it (bench tune)
BASELINE = "joint"  # the baseline where a suite names none and has a method of this label
JOINT = methods.REGIMES[0]  # the training regime of every run before regimes existed
AMP_PRECISION = {False: "fp32", True: "fp16"}  # training.amp, the key precision replaced
Label = Matching(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*",
                 "a label of letters, digits and _ . + = - (it names folders)")
# The types of the data set options that several data sets declare; others are free.
DATA_OPTIONS = {**{k: Annotated[Int, Field(ge=1)] for k in (
    "num_classes", "image_size", "channels", "train_size", "test_size")},
    "normalization": Choice("normalization", tuple(data.NORMALIZATIONS))}


@functools.lru_cache
def _options_model(name: str, declared: str) -> type[Config]:
    """The options data set ``name`` declares (``declared``: their repr, a cache key)."""
    return create_model(f"{name} options", __base__=Config, **{
        k: (DATA_OPTIONS.get(k, JSON), v) for k, v in data.get(name).options.items()})


class Subset(Config):
    train: Optional[Int] = Key(None, "the first k training images only; null: all", ge=1)
    test: Optional[Int] = Key(None, "the first k test images only; null: all", ge=1)


class DatasetConfig(Config):
    name: Choice("data set", data.names) = Key(..., "a registered data set")
    root: Text = Key("data", "the folder holding the data sets")
    download: Flag = Key(False, "download when missing (CIFAR, MNIST)")
    heldout: Optional[Int] = Key(None, "calibration images taken from train (thresholds, "
                                 "tuning), at least 1; null: the data set's default")
    subset: Subset = Key(Subset, "smoke runs")
    options: Free() = Key({}, "the data set's own (bench.data.register), defaults filled")

    @field_validator("options")
    @classmethod
    def _declared(cls, options: Mapping, info) -> Mapping:
        if "name" not in info.data:
            return options
        model = _options_model(info.data["name"], repr(data.get(info.data["name"]).options))
        return freeze(model.model_validate(dict(options)).as_dict())

    @model_validator(mode="after")
    def _heldout(self) -> "DatasetConfig":
        heldout = self.heldout
        if heldout is None:
            heldout = data.get(self.name).default_heldout(dict(self.options))
        if heldout < 1:  # 0 would train on all of train, as the reference's anytime runs do
            expect("at least 1 image: every run predicts on the held-out split, where exit "
                   "thresholds are fitted (never on test)", heldout, "heldout")
        size = self.options.get("train_size")
        if size is not None and heldout >= size:
            expect(f"fewer than dataset.options.train_size = {size} images", heldout, "heldout")
        return self.derive(heldout=heldout)

    def shape(self) -> tuple[int, tuple[int, int, int]]:
        """(num_classes, (C, H, W)) of the images served."""
        return data.get(self.name).shape(dict(self.options))


class OptimizerConfig(Config):
    name: Choice("optimizer", ("sgd",)) = Key("sgd", "SGD with momentum")
    lr: Number = Key(0.1, "learning rate", gt=0)
    momentum: Number = Key(0.9, "momentum", ge=0, lt=1)
    weight_decay: Number = Key(1e-4, "L2 weight decay", ge=0)
    nesterov: Flag = Key(False, "Nesterov momentum (needs momentum > 0)")

    @model_validator(mode="after")
    def _momentum(self) -> "OptimizerConfig":
        if self.nesterov and self.momentum == 0:
            fail("Nesterov momentum needs momentum > 0", "nesterov")
        return self


class ScheduleConfig(Config):
    """The learning rate over each training stage (a stage-wise method restarts it)."""
    name: Choice("schedule", ("step", "cosine", "constant")) = Key("step", "lr schedule")


class StepSchedule(ScheduleConfig):
    milestones: Items(Number, gt=0, lt=1) = Key((0.5, 0.75), "lr x gamma at these "
                                                "fractions of the stage's epochs")
    gamma: Number = Key(0.1, "the factor at each milestone", gt=0)

    @model_validator(mode="after")
    def _increasing(self) -> "StepSchedule":
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            expect("increasing fractions of the epochs", list(self.milestones), "milestones")
        return self


class TrainingConfig(Config):
    """The paper's recipe by default: SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch
    64; lr x0.1 at 50% and 75% of the epochs (CIFAR: epochs 150 and 225 of 300)."""
    epochs: Int = Key(300, "epochs per run", ge=1)
    batch_size: Int = Key(64, "per process (per GPU with torchrun)", ge=1)
    eval_batch_size: Int = Key(256, "per process, for prediction", ge=1)
    optimizer: OptimizerConfig = Key(OptimizerConfig, "the optimizer")
    schedule: Annotated[ScheduleConfig, OneOf("schedule", {
        "step": StepSchedule, "cosine": ScheduleConfig, "constant": ScheduleConfig}, "step")
    ] = Key(StepSchedule, "step (milestones, gamma), cosine or constant")
    device: Matching(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N") = Key(
        "auto", "auto, cpu, cuda or cuda:N; auto: CUDA when present")
    precision: Choice("precision", PRECISIONS) = Key("fp32", "autocast dtype; auto: bf16 on "
                                                     "a GPU that has it (bench.engine.precision)")
    workers: Int = Key(0, "data loader processes", ge=0)
    channels_last: Flag = Key(False, "channels-last memory format")
    sync_bn: Flag = Key(False, "SyncBatchNorm under torchrun (CUDA only)")
    compile: Flag = Key(False, "train under torch.compile")
    cuda_graphs: Annotated[Any, FlagOrWord("cuda_graphs", ("true", "false", "auto"))] = Key(
        False, "record each training step once as a CUDA graph and replay it; auto: on a "
        "CUDA device where the method's step can be recorded (docs/speed.md)")
    drop_last: Flag = Key(True, "drop the last partial training batch; false keeps it, as "
                          "the BoostNet reference does")
    regime: Choice("training regime", methods.REGIMES) = Key(
        "joint", "joint, disjoint or mixed (docs/regimes.md); a method entry may give its own")
    backbone_epochs: Optional[Int] = Key(
        None, "disjoint and mixed: phase 1's epochs (backbone and final head), part of "
        "`epochs`, the total; 0 (pretrained backbones only) skips phase 1; null: half of "
        "`epochs`", ge=0)

    @classmethod
    def given(cls, value: Any) -> Any:
        """The old key ``amp``: true is precision fp16, false fp32."""
        if not isinstance(value, Mapping) or "amp" not in value:
            return value
        value = dict(value)
        amp = value.pop("amp")
        if amp is not None and not isinstance(amp, bool):
            expect("true or false", amp, "amp")
        if amp is not None and value.get("precision") is not None:
            fail("training.amp is the old spelling of training.precision (amp true: fp16, "
                 "false: fp32); give only training.precision", "amp")
        return value if amp is None else {**value, "precision": AMP_PRECISION[amp]}

    @model_validator(mode="after")
    def _cuda_graphs(self) -> "TrainingConfig":
        """cuda_graphs true where no step can be recorded: refused as the suite loads."""
        if self.cuda_graphs is not True:
            return self
        why = None
        if self.device == "cpu":
            why = "training.device is cpu: CUDA graphs need a CUDA device"
        elif self.precision == "fp16":
            why = ("training.precision is fp16, whose gradient scaler reads its overflow "
                   "flag back every step (bf16 needs no scaler)")
        elif self.compile:
            why = "training.compile records CUDA graphs of the forward itself"
        if why:
            fail(f"training.cuda_graphs is true, but {why}; use auto or false", "cuda_graphs")
        return self


class LatencyConfig(Config):
    """Where the per-exit latency that ms budgets cost is measured (bench latency's
    settings); never part of a run id."""
    device: Matching(r"cpu|cuda(:\d+)?", "cpu, cuda or cuda:N") = Key("cpu", "cpu, cuda "
                                                                      "or cuda:N")
    batch_size: Int = Key(1, "images per batch (1: image by image)", ge=1)
    threads: Int = Key(1, "torch (or ONNX Runtime) threads", ge=1)
    runtime: Choice("runtime", ("pytorch", "onnxruntime")) = Key(
        "pytorch", "pytorch, or onnxruntime (the run's ONNX stage graphs, CPU)")
    images: Optional[Int] = Key(None, "the first k test images timed; null: all", ge=1)


class BudgetsConfig(Config):
    """At most one of mmacs and fractions, and ms beside either; none: no budgeted
    evaluation."""
    mmacs: Optional[Items(Number, gt=0)] = Key(None, "absolute budgets (MMACs)")
    fractions: Optional[Items(Number, gt=0, le=1)] = Key(None, "fractions of the last exit's "
                                                         "cost")
    ms: Optional[Items(Number, gt=0)] = Key(None, "budgets in measured ms per image: an "
                                            "image costs the latency of the exit it takes, "
                                            "measured as `latency` says (docs/deploy.md)")
    latency: LatencyConfig = Key(LatencyConfig, "where ms budgets are measured")

    @model_validator(mode="after")
    def _one(self) -> "BudgetsConfig":
        if self.mmacs is not None and self.fractions is not None:
            fail("give at most one of mmacs (absolute) and fractions (of the last exit's "
                 "cost), found both")
        return self


def _combiner(value: Any) -> Mapping[str, Any]:
    """``name`` or ``{name: ..., option: value}`` -> ``{"name": ..., **options}``, the
    options checked by building it."""
    value = {"name": value} if isinstance(value, str) else value
    if not isinstance(value, Mapping) or "name" not in value:
        expect("a combiner name or a mapping with a name key", value)
    name = Known("combiner", exit_combiners.names).check(value["name"], "name")
    options = plain({k: v for k, v in value.items() if k != "name"})
    try:
        exit_combiners.create(name, **options)
    except ValueError as err:
        fail(str(err))
    return freeze({"name": name, **options})


class RiskControlConfig(Config):
    """Risk-controlled thresholds per exit rule (docs/trustworthy-exits.md), fitted on the
    held-out split: one λ̂ per loss, procedure and ε."""
    losses: Items(Choice("loss", tuple(exit_risk.LOSS_BOUNDS)), distinct=True) = Key(
        tuple(exit_risk.LOSS_BOUNDS), "what exiting early may cost, against the last exit")
    procedures: Items(Choice("procedure", exit_risk.PROCEDURES), distinct=True) = Key(
        exit_risk.PROCEDURES, "crc (in expectation), ucb and ltt (with probability 1 - delta)")
    epsilons: Items(Number, distinct=True, gt=0, lt=1) = Key(
        exit_risk.DEFAULT_EPSILONS, "risk levels, each in (0, 1)")
    delta: Number = Key(exit_risk.DEFAULT_DELTA, "ucb's and ltt's failure probability",
                        gt=0, lt=1)
    grid: Int = Key(exit_risk.DEFAULT_GRID, "thresholds scanned: 1, ..., 0 in grid - 1 steps",
                    ge=2)
    repeats: Int = Key(exit_validity.DEFAULT_REPEATS, "random held-out halves of the "
                       "validity diagnostic", ge=1)


class PredictionSetsConfig(Config):
    """Split-conformal prediction sets per exit, quantiles from the held-out split."""
    alphas: Items(Number, distinct=True, gt=0, lt=1) = Key(
        exit_conformal.DEFAULT_ALPHAS, "miscoverage levels, each in (0, 1): a set holds the "
        "true class with probability 1 - alpha")


class EvaluationConfig(Config):
    """Exit rules, calibration and trustworthy exits, computed from saved logits: never part
    of a run id. Anytime quality (monotonicity, AUROC, ECE per exit) is always computed."""
    calibration: Flag = Key(False, "also post-hoc temperature scaling")
    criteria: Items(Choice("exit criterion", exit_criteria.names), distinct=True) = Key(
        ("max_softmax",), "exit criteria (bench.evaluate.criteria), each with every combiner")
    combiners: Items(Annotated[Mapping, PlainValidator(_combiner)], distinct=True) = Key(
        ({"name": "none"},), "post-hoc combiners: names or {name, option: value}")
    global_threshold: Flag = Key(False, "also one threshold shared by every exit")
    risk_control: Optional[RiskControlConfig] = Key(
        None, "risk-controlled thresholds per exit rule; {} for the defaults; null: none")
    prediction_sets: Optional[PredictionSetsConfig] = Key(
        None, "conformal prediction sets per exit; {} for the defaults; null: none")


class Entry(Config):
    """A backbone or method of the suite: a registry name, or a mapping."""

    @classmethod
    def given(cls, value: Any) -> Any:
        value = {"name": value} if isinstance(value, str) else value
        if isinstance(value, Mapping) and value.get("label") is None and "name" in value:
            value = {**value, "label": value["name"]}
        return value


def _unique_labels(section: str) -> AfterValidator:
    def check(entries: tuple) -> tuple:
        labels = [e.label for e in entries]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                fail(f"label {label!r} is already used by {section}[{labels.index(label)}]; "
                     "give each entry its own label", f"[{i}].label")
        return entries
    return AfterValidator(check)


class BackboneEntry(Entry):
    name: Choice("backbone", backbones.names) = Key(..., "a registered backbone")
    label: Label = Key(None, "names its runs and folders; null: the name")
    overrides: Free("a mapping of constructor arguments") = Key({}, "constructor arguments")


class MethodEntry(Entry):
    DERIVED = ("reference", "paper")
    OMIT_IF_NONE = ("paper", "regime")
    name: Choice("method", methods.names) = Key(..., "a registered method")
    label: Label = Key(None, "names its runs and folders; null: the name, with `-<regime>` "
                       "after it when the entry gives a regime other than joint")
    options: Free() = Key({}, "what the method declares, defaults filled; `tuned`: the "
                          "suite's study chooses it")
    reference: bool = Key(False, "its options are the method's defaults")
    paper: Optional[str] = Key(None, "the paper's curve it stands for")
    regime: Optional[Choice("training regime", methods.REGIMES)] = Key(
        None, "this method's training regime; null: training.regime")

    @classmethod
    def given(cls, value: Any) -> Any:
        """The default label of an entry with a regime of its own: ``boostnet-mixed``."""
        if isinstance(value, Mapping) and value.get("label") is None and "name" in value \
                and value.get("regime") not in (None, JOINT):
            value = {**value, "label": f"{value['name']}-{value['regime']}"}
        return super().given(value)

    @field_validator("options")
    @classmethod
    def _declared(cls, given: Mapping, info) -> Mapping:
        return freeze(method_options(info.data["name"], given)) if "name" in info.data \
            else given

    @model_validator(mode="after")
    def _reference(self) -> "MethodEntry":
        return self.derive(reference=thaw(self.options) == methods.defaults(self.name))

    @property
    def tuned(self) -> tuple[str, ...]:
        """Options whose value the suite's study chooses."""
        return tuple(k for k, v in self.options.items() if v == TUNED)

    def create(self) -> methods.Method:
        """The entry's method, its declared default standing in for each tuned option (the
        method a suite's checks and the cost estimate look at)."""
        defaults = methods.defaults(self.name)
        return methods.create(self.name, **{k: defaults[k] if v == TUNED else v
                                            for k, v in thaw(self.options).items()})

    def identity(self) -> dict:
        """What the run config (and so the run id) holds of the entry."""
        return {"name": self.name, "label": self.label, "options": thaw(self.options)}


def method_options(name: str, given: Mapping) -> dict:
    """Every option of method ``name``: given ones checked by the kinds it declares
    (``tuned`` where its search space has them), defaults for the rest."""
    declared = {o.name: o for o in methods.options_of(name)}
    space = methods.search_space(name)
    for key in given:
        if key not in declared:
            fail(f"unknown key {key!r}; allowed: {', '.join(declared)}", key)
    out = {}
    for key, option in declared.items():
        if given.get(key) == TUNED and key not in space:
            fail(f"'tuned' is only for the options in method {name!r}'s search space: "
                 f"{', '.join(space) or 'it has none'}", key)
        try:
            out[key] = TUNED if given.get(key) == TUNED else \
                option.check(thaw(given[key]) if key in given else option.default)
        except methods.OptionError as err:
            expect(err.expected, err.value, key if err.index is None else f"{key}[{err.index}]")
    return out


def mark_paper_curves(entries: tuple[MethodEntry, ...]) -> tuple[MethodEntry, ...]:
    """The first reference entry of each method that stands for one of the paper's curves
    says which (bench.evaluate.paper); the report puts the paper's numbers beside it."""
    out, seen = [], set()
    for m in entries:
        curve = methods.paper_curve(m.name)
        if m.reference and curve and curve not in seen:
            seen.add(curve)
            m = m.replace(paper=curve)
        out.append(m)
    return tuple(out)


Methods = Annotated[Items(MethodEntry), _unique_labels("methods"),
                    AfterValidator(mark_paper_curves)]


class SuiteConfig(Config):
    name: Matching(r"(?s).*\S.*", "a non-empty string") = Key(
        ..., "display name, any text; results go to results/<slug>/")
    description: AnyText = Key("", "free text, shown on the report")
    dataset: DatasetConfig = Key(..., "the data and its splits")
    backbones: Annotated[Items(BackboneEntry), _unique_labels("backbones")] = Key(
        ..., "registry names, or {name, label, overrides}")
    methods: Methods = Key(..., "registry names, or {name, label, options, regime}")
    seeds: Items(Seed, distinct=True) = Key((0,), "one run per seed (init, data order, "
                                            "held-out split), each in [0, 2**32)")
    training: TrainingConfig = Key(TrainingConfig, "the training recipe")
    budgets: BudgetsConfig = Key(BudgetsConfig, "budgeted evaluation")
    evaluation: EvaluationConfig = Key(EvaluationConfig, "metrics from the saved logits")
    tune: Optional[TuneConfig] = Key(None, "Optuna search for bench tune (docs/tuning.md)")
    baseline: Optional[Text] = Key(None, "the method label the others are compared with; "
                                   f"null: `{BASELINE}` where a method has that label")
    plugins: tuple[str, ...] = Key((), "files (relative to the suite) or modules imported "
                                   "first: they register methods, backbones, data sets")
    executor: ExecutorConfig = Key(ExecutorConfig, "how runs are handed out; never hashed")

    @model_validator(mode="after")
    def _across(self) -> "SuiteConfig":
        """Checks and defaults that need more than one section."""
        for i, b in enumerate(self.backbones):
            if "num_classes" in b.overrides:
                fail(f"num_classes comes from the data set ({self.dataset.name}: "
                     f"{self.dataset.shape()[0]})", f"backbones[{i}].overrides.num_classes")
        labels = [m.label for m in self.methods]
        if self.baseline is not None and self.baseline not in labels:
            fail(f"{self.baseline!r} is not a method label of this suite; labels: "
                 f"{', '.join(labels)}", "baseline")
        tune = self.tune and tuning.resolve(self.tune, self)
        for i, m in enumerate(self.methods):
            if m.tuned and tune is None:
                fail(f"{m.tuned[0]}: tuned needs a tune: section in the suite "
                     "(docs/tuning.md)", f"methods[{i}].options.{m.tuned[0]}")
        baseline = self.baseline or (BASELINE if BASELINE in labels else None)
        return self.derive(baseline=baseline, tune=tune, training=self._regimes())

    def regime_of(self, m: MethodEntry) -> str:
        return m.regime or self.training.regime

    def training_for(self, m: MethodEntry) -> TrainingConfig:
        """The training recipe of method entry ``m``'s runs: its regime, and phase 1's
        epochs under disjoint and mixed (null under joint, so joint runs keep their ids)."""
        regime = self.regime_of(m)
        split = None if regime == JOINT else self.training.backbone_epochs
        if (regime, split) == (self.training.regime, self.training.backbone_epochs):
            return self.training
        return self.training.replace(regime=regime, backbone_epochs=split)

    def _regimes(self) -> TrainingConfig:
        """training.backbone_epochs checked and its default filled where a run needs it;
        every method's regime checked against what the method says has a meaning."""
        t = self.training
        phased = [m for m in self.methods if self.regime_of(m) != JOINT]
        if not phased:
            if t.backbone_epochs is not None:
                fail("backbone_epochs is phase 1's length under the disjoint and mixed "
                     "regimes, and every method here trains under regime joint",
                     "training.backbone_epochs")
            return t
        for i, m in enumerate(self.methods):
            why = methods.regime_refusal(m.create(), self.regime_of(m))
            if why:
                at = f"methods[{i}].regime" if m.regime else "training.regime"
                fail(f"method {m.label!r} ({m.name}) has no meaning under regime "
                     f"{self.regime_of(m)!r}: {why}", at)
        split = t.backbone_epochs
        if split is None:
            if t.epochs < 2:
                fail(f"regime {self.regime_of(phased[0])!r} trains in two phases and needs "
                     f"at least 2 epochs, found {t.epochs}", "training.epochs")
            return t.replace(backbone_epochs=t.epochs // 2)
        if split >= t.epochs:
            fail(f"phase 1's epochs are part of training.epochs = {t.epochs} (the total) and "
                 f"must leave phase 2 some, found {split}", "training.backbone_epochs")
        for i, b in enumerate(self.backbones):
            if split == 0 and not (b.overrides.get("pretrained") or
                                   b.overrides.get("pretrained_file")):
                fail(f"0 skips phase 1, which only a pretrained backbone may; backbone "
                     f"{b.label!r} has neither overrides.pretrained nor "
                     f"overrides.pretrained_file", "training.backbone_epochs")
        return t


TOP_LEVEL = SuiteConfig.keys()
