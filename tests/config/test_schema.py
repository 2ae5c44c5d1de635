"""The schema's models (bench.config.schema, bench.config.types): defaults, strict types,
bounds, null as the default, frozen values and the messages pydantic's errors become."""
import typing

import pydantic
import pytest

from bench.config import schema, tune
from bench.config.executor import ExecutorConfig, RayConfig, SlurmConfig
from bench.config.types import Config, Flag, Key, problem, suite_error
from bench.errors import SuiteError

SECTIONS = [schema.Subset, schema.OptimizerConfig, schema.StepSchedule, schema.TrainingConfig,
            schema.BudgetsConfig, schema.EvaluationConfig, tune.SpaceConfig,
            tune.SamplerConfig, tune.MedianPruner, tune.PercentilePruner, tune.TuneConfig,
            RayConfig, SlurmConfig, ExecutorConfig]


def models(root=schema.SuiteConfig, seen=None) -> set:
    """Every model reachable from the suite's, variants included."""
    seen = set() if seen is None else seen
    seen.add(root)
    for field in root.model_fields.values():
        stack = [field.annotation, *field.metadata]
        while stack:
            t = stack.pop()
            stack += typing.get_args(t) + tuple(getattr(t, "models", {}).values())
            if isinstance(t, type) and issubclass(t, Config) and t not in seen:
                models(t, seen)
    return seen


def message(model, value) -> tuple[str, str]:
    with pytest.raises(pydantic.ValidationError) as err:
        model.model_validate(value)
    return problem(err.value.errors()[0])


def test_every_key_has_a_one_line_description():
    found = models()
    assert set(SECTIONS) <= found and len(found) >= 20
    for model in found:
        for name, field in model.model_fields.items():
            assert field.description and "\n" not in field.description, (model, name)


@pytest.mark.parametrize("model", SECTIONS, ids=lambda m: m.__name__)
def test_defaults_are_resolved_values(model):
    """A section's defaults validate to themselves: what as_dict gives reads back the same,
    numbers already floats."""
    default = model()
    assert model.model_validate(default.as_dict()) == default
    assert model.model_validate({k: None for k in model.keys() if k != "name"}) == default


def test_integers_and_numbers_are_strict():
    assert message(schema.TrainingConfig, {"epochs": 2.0}) == (
        "epochs", "expected an integer, found 2.0 (float)")
    assert message(schema.TrainingConfig, {"epochs": True}) == (
        "epochs", "expected an integer, found True (bool)")
    assert message(schema.TrainingConfig, {"epochs": "3"}) == (
        "epochs", "expected an integer, found '3' (str)")
    assert message(schema.OptimizerConfig, {"lr": True}) == (
        "lr", "expected a finite number, found True (bool)")
    assert message(schema.OptimizerConfig, {"lr": float("inf")}) == (
        "lr", "expected a finite number, found inf (float)")
    assert message(schema.TrainingConfig, {"sync_bn": 1}) == (
        "sync_bn", "expected true or false, found 1 (int)")
    lr = schema.OptimizerConfig(lr=1).lr
    assert lr == 1.0 and type(lr) is float


@pytest.mark.parametrize("model,value,where,says", [
    (schema.TrainingConfig, {"epochs": 0}, "epochs", "expected an integer >= 1, found 0 (int)"),
    (schema.OptimizerConfig, {"momentum": 1}, "momentum", "expected a number < 1, found 1"),
    (schema.OptimizerConfig, {"weight_decay": -0.5}, "weight_decay",
     "expected a number >= 0, found -0.5 (float)"),
    (schema.BudgetsConfig, {"fractions": [0.5, 0]}, "fractions[1]", "expected a number > 0"),
    (schema.StepSchedule, {"milestones": []}, "milestones", "expected a non-empty list"),
    (schema.StepSchedule, {"milestones": [0.5, 0.5]}, "milestones", "increasing fractions"),
    (tune.SamplerConfig, {"seed": -1}, "seed", "expected a seed: an integer in [0, 2**32)"),
    (schema.TrainingConfig, {"device": "gpu"}, "device",
     "expected auto, cpu, cuda or cuda:N, found 'gpu' (str)"),
    (schema.TrainingConfig, {"schedule": {"name": "linear"}}, "schedule.name",
     "unknown schedule 'linear'; known: step, cosine, constant"),
    (schema.TrainingConfig, {"schedule": {"name": "constant", "gamma": 0.5}}, "schedule.gamma",
     "unknown key 'gamma'; allowed: name"),
    (schema.TrainingConfig, {"optimizer": "sgd"}, "optimizer",
     "expected a mapping, found 'sgd' (str)"),
    (schema.OptimizerConfig, {"momentum": 0, "nesterov": True}, "nesterov", "momentum > 0"),
    (schema.EvaluationConfig, {"criteria": ["entropy", "entropy"]}, "criteria[1]",
     "'entropy' is listed twice"),
    (schema.BackboneEntry, {"name": "chain_tiny", "overrides": {"widths": [1, float("nan")]}},
     "overrides.widths[1]", "expected a finite number, found nan"),
])
def test_errors_name_the_key_and_what_was_expected(model, value, where, says):
    path, text = message(model, value)
    assert path == where and says in text, (path, text)


def test_null_is_the_default_and_unknown_keys_list_the_allowed_ones():
    assert schema.TrainingConfig.model_validate({"epochs": None, "optimizer": None}) == \
        schema.TrainingConfig()
    assert message(schema.BudgetsConfig, {"fraction": [0.5]}) == (
        "fraction", "unknown key 'fraction'; allowed: mmacs, fractions, ms, latency")
    assert message(schema.SuiteConfig, {"dataset": {"name": "synthetic"}})[1] == \
        "required key is missing"


def test_values_are_frozen_and_read_only():
    entry = schema.BackboneEntry(name="chain_tiny", overrides={"widths": [8, 16]})
    assert entry.label == "chain_tiny" and entry.overrides["widths"] == (8, 16)
    with pytest.raises(TypeError):
        entry.overrides["widths"] = (1,)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        entry.label = "other"
    assert entry.replace(label="b").label == "b" and entry.label == "chain_tiny"
    assert entry.as_dict() == {"name": "chain_tiny", "label": "chain_tiny",
                               "overrides": {"widths": [8, 16]}}


def test_the_old_amp_key_is_read_as_precision():
    assert schema.TrainingConfig.model_validate({"amp": True}).precision == "fp16"
    assert schema.TrainingConfig.model_validate({"amp": False}).precision == "fp32"
    assert "amp" not in schema.TrainingConfig.model_validate({"amp": True}).as_dict()


def test_pruners_and_samplers_take_a_bare_name():
    t = tune.TuneConfig.model_validate({"pruner": "percentile", "sampler": "random"})
    assert t.pruner.as_dict() == {"name": "percentile", "percentile": 25.0,
                                  "n_startup_trials": 1, "n_warmup_steps": 0}
    assert t.pruner.params == {"percentile": 25.0, "n_startup_trials": 1, "n_warmup_steps": 0}
    assert t.sampler.as_dict() == {"name": "random", "seed": 0}
    assert tune.TuneConfig.model_validate({"pruner": "none"}).pruner.params == {}


def test_a_new_key_is_one_line():
    """What a new evaluation key takes (as issue 23's did): one declaration gives the
    default, the type check, the error path, the resolved form and the key's description."""
    class Grown(schema.EvaluationConfig):
        abstain: Flag = Key(False, "abstain where no exit is confident")

    assert Grown().as_dict()["abstain"] is False
    assert list(Grown().as_dict())[-1] == "abstain"
    assert message(Grown, {"abstain": "yes"}) == (
        "abstain", "expected true or false, found 'yes' (str)")
    assert "abstain" in message(Grown, {"abstai": 1})[1]
    assert Grown.model_fields["abstain"].description.startswith("abstain where")


def test_a_validation_error_becomes_a_suite_error():
    with pytest.raises(pydantic.ValidationError) as err:
        schema.SuiteConfig.model_validate({"name": "x", "dataset": {"name": "synthetic"},
                                           "backbones": ["chain_tiny"], "methods": ["joint"],
                                           "training": {"epochs": -3}})
    error = suite_error("s.yaml", err.value)
    assert isinstance(error, SuiteError) and error.path == "training.epochs"
    assert str(error) == "s.yaml: training.epochs: expected an integer >= 1, found -3 (int)"


def test_derived_keys_are_filled_however_a_model_is_built():
    """By model_validate (a suite file) and by keywords alike."""
    assert schema.MethodEntry(name="joint").reference is True
    assert schema.MethodEntry.model_validate({"name": "boostnet", "options": {
        "temperature": 0.25}}).reference is False
    assert schema.DatasetConfig(name="synthetic").heldout == 1000  # a fifth of train_size
    suite = schema.SuiteConfig(name="s", dataset={"name": "synthetic"},
                               backbones=["chain_tiny"], methods=["boostnet", "joint"])
    assert suite.baseline == "joint" and suite.methods[1].paper == "MSDNet"
