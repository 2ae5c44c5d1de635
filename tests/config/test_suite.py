import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pydantic
import pytest

import methods
from bench import backbones, flops
from bench.backbones import vit
from bench.evaluate import combiners as exit_combiners
from bench.evaluate import criteria as exit_criteria
from bench.config import SuiteError, load_suite, select
from bench.pipeline.train import lr_factor

ROOT = Path(__file__).resolve().parents[2]

# fvcore counts of the big backbones (MMACs per exit), so that loading the shipped suites
# does not trace them (small ones, such as the quickstart's msdnet_tiny variant, are counted for
# real); msdnet10_cifar's are docs/paper.md's numbers. Real counting is tested
# on chain_tiny below.
KNOWN_MMACS = {
    ("MSDNet", 10, (3, 32, 32)): [15.31, 25.75, 38.11, 52.45, 62.61, 74.54, 88.24, 100.58,
                                  110.68, 122.26],
    ("MSDNet", 5, (3, 224, 224)): [423.93, 936.52, 1457.20, 1919.42, 2161.30],  # step 5
    # deit_small_ee on CIFAR-100's 32x32 images resized to 224 (suites/cifar100-vit.yaml)
    ("EarlyExitViT", 12, (3, 32, 32)): [437.59, 816.86, 1196.12, 1575.39, 1954.66, 2333.92,
                                        2713.19, 3092.45, 3471.72, 3850.98, 4230.25, 4609.52],
}


pytestmark = pytest.mark.usefixtures("fresh_cache")


@pytest.fixture
def known_costs(monkeypatch):
    real = flops.per_exit

    def per_exit(model, input_size=None):
        key = (type(model).__name__, model.num_exits, tuple(model.input_size))
        if key in KNOWN_MMACS:
            return [int(m * 1e6) for m in KNOWN_MMACS[key]]
        return real(model, input_size)

    monkeypatch.setattr(flops, "per_exit", per_exit)


MINIMAL = """\
name: mini
dataset: {name: synthetic}
backbones: [chain_tiny]
methods: [joint]
"""

SMALL = """\
name: small
dataset: {name: synthetic, heldout: 100, options: {train_size: 500}}
backbones: [chain_tiny]
methods:
  - joint
  - boostnet
  - {name: boostnet, label: bn-t25, options: {temperature: [0.25, 0.25]}}
seeds: [0, 1]
training: {epochs: 3}
budgets: {fractions: [0.5, 1.0]}
"""


def write(tmp_path, text, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


SHIPPED = ["quickstart", "fashion-mnist", "cifar100", "cifar100-ablation", "imagenet",
           "quickstart-methods", "cifar100-methods", "fashion-mnist-reference",
           "quickstart-vit", "cifar100-vit"]


@pytest.fixture
def no_weight_download(monkeypatch):
    """``pretrained: true`` (cifar100-vit) would download timm's weights; what loading a
    suite checks (runs, ids, costs, budgets) does not depend on them. Skips where timm
    cannot be imported (it needs torchvision, which some torch builds lack)."""
    try:
        vit._timm()
    except vit.TimmUnavailable as e:
        pytest.skip(str(e))
    monkeypatch.setattr(vit, "_download_pretrained",
                        lambda name, timm_name, kwargs: vit._timm().create_model(timm_name,
                                                                                 **kwargs))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suites_load(name, known_costs, request):
    if name.endswith("-vit"):
        request.getfixturevalue("no_weight_download")
    s = load_suite(ROOT / "suites" / f"{name}.yaml")
    assert s.slug == name and s.runs
    c = s.resolved()
    n_runs = len(c["backbones"]) * len(c["methods"]) * len(c["seeds"])
    assert len(s.runs) == n_runs == len({r.run_id for r in s.runs})
    for r in s.runs:
        assert r.budgets_mmacs and all(r.exit_mmacs[0] <= b <= r.exit_mmacs[-1]
                                       for b in r.budgets_mmacs)
        json.dumps(r.config)
    json.dumps(c)


def test_shipped_suites_are_all_tested():
    shipped = {p.stem for p in (ROOT / "suites").glob("*.yaml")}
    assert shipped == set(SHIPPED)


def test_the_fashion_mnist_reference_suite_mirrors_the_reference_protocol(known_costs):
    """4-exit MSDNet from the reference's arguments, 12 epochs with lr x0.1 at epochs 6 and
    9 (0-based: from epoch 6 and from epoch 9), the last partial batch kept, joint and
    boostnet on 3 seeds."""
    s = load_suite(ROOT / "suites" / "fashion-mnist-reference.yaml")
    c = s.config
    assert (c.dataset.name, c.dataset.heldout, c.dataset.options["augment"]) == (
        "fashion_mnist", 5000, True)
    (b,) = c.backbones
    model = backbones.create(b.name, num_classes=10, **b.overrides)
    assert model.num_exits == 4
    assert dict(b.overrides) == {"n_blocks": 4, "step": 1, "base": 1, "channels": 8}
    assert [round(m, 2) for m in s.runs[0].exit_mmacs] == [3.72, 7.55, 11.34, 15.02]
    t = c.training
    assert (t.epochs, t.batch_size, t.drop_last) == (12, 64, False)
    assert (t.optimizer.lr, t.optimizer.momentum, t.optimizer.weight_decay,
            t.optimizer.nesterov) == (0.1, 0.9, 1e-4, False)
    assert [lr_factor(e, 12, t.schedule) for e in range(12)] == pytest.approx(
        [1.0] * 6 + [0.1] * 3 + [0.01] * 3)
    assert [(m.name, dict(m.options).get("temperature")) for m in c.methods] == [
        ("joint", None), ("boostnet", 0.5)]
    assert dict(c.methods[1].options)["grad_rescale"] is True
    assert c.seeds == (0, 1, 2) and len(s.runs) == 6


def test_the_methods_suites_hold_every_method_and_every_rule(known_costs):
    cifar = load_suite(ROOT / "suites" / "cifar100-methods.yaml")
    quick = load_suite(ROOT / "suites" / "quickstart-methods.yaml")
    for s in (cifar, quick):
        names = [m.name for m in s.config.methods]
        shipped = [n for n in methods.names()  # not the plugins other tests register
                   if type(methods.create(n)).__module__.startswith("methods.")]
        assert sorted(names) == shipped, (
            f"{s.path} must list every method of methods/ once, with its defaults")
        assert all(m.reference for m in s.config.methods) and s.config.baseline == "joint"
        ev = s.config.evaluation
        assert sorted(ev.criteria) == exit_criteria.names() and ev.global_threshold
        assert {c["name"] for c in ev.combiners} == set(exit_combiners.names())
    assert quick.resolved()["evaluation"] == cifar.resolved()["evaluation"]
    assert quick.config.seeds == (0,) and cifar.config.seeds == (0, 1, 2)
    paper = load_suite(ROOT / "suites" / "cifar100.yaml").resolved()
    c = cifar.resolved()
    assert c["training"] == paper["training"] and c["budgets"] == paper["budgets"]
    assert c["dataset"] == paper["dataset"] and c["backbones"] == paper["backbones"]


def test_cifar100_is_the_paper_protocol(known_costs):
    s = load_suite(ROOT / "suites" / "cifar100.yaml")
    t = s.resolved()["training"]
    assert t["epochs"] == 300 and t["batch_size"] == 64
    assert t["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9,
                              "weight_decay": 1e-4, "nesterov": False}
    assert t["schedule"] == {"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1}
    assert s.config.seeds == (0, 1, 2) and s.config.dataset.heldout == 5000
    assert s.runs[0].budgets_mmacs == (20.0, 30.0, 40.0, 50.0, 60.0)
    assert [r.method_label for r in s.runs[::3]] == ["joint", "sequential", "boostnet"]


def test_minimal_suite_gets_every_default(tmp_path):
    s = load_suite(write(tmp_path, MINIMAL))
    c = s.resolved()
    assert c["description"] == "" and c["seeds"] == [0] and c["tune"] is None
    assert c["baseline"] == "joint" and c["plugins"] == []
    assert c["evaluation"] == {"calibration": False, "criteria": ["max_softmax"],
                               "combiners": [{"name": "none"}], "global_threshold": False,
                               "risk_control": None, "prediction_sets": None}
    assert c["budgets"] == {"mmacs": None, "fractions": None, "ms": None, "latency": {
        "device": "cpu", "batch_size": 1, "threads": 1, "runtime": "pytorch", "images": None}}
    assert c["training"] == {
        "epochs": 300, "batch_size": 64, "eval_batch_size": 256,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                      "nesterov": False},
        "schedule": {"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1},
        "device": "auto", "precision": "fp32", "workers": 0, "channels_last": False,
        "sync_bn": False, "compile": False, "cuda_graphs": False, "drop_last": True,
        "regime": "joint", "backbone_epochs": None}
    d = c["dataset"]
    assert (d["root"], d["download"], d["heldout"]) == ("data", False, 1000)
    assert d["subset"] == {"train": None, "test": None}
    assert d["options"]["num_classes"] == 10 and d["options"]["train_size"] == 5000
    assert c["backbones"] == [{"name": "chain_tiny", "label": "chain_tiny", "overrides": {}}]
    assert c["methods"] == [{"name": "joint", "label": "joint",
                             "options": {"loss_weights": None}, "reference": True,
                             "paper": "MSDNet"}]
    (r,) = s.runs
    assert r.run_id.startswith("chain_tiny--joint--s0--") and len(r.run_id.split("--")[-1]) == 8
    assert (r.num_classes, r.input_size, r.budgets_mmacs) == (10, (3, 32, 32), ())
    assert set(r.config) >= {"dataset", "training", "backbone", "method", "seed",
                             "budgets_mmacs", "code_version"}


def test_method_defaults_are_filled(tmp_path):
    s = load_suite(write(tmp_path, SMALL))
    boost = s.resolved()["methods"][1]["options"]
    assert boost == {"loss_weights": None, "temperature": 0.5, "joint": True,
                     "freeze_previous": True, "grad_rescale": True}
    assert s.resolved()["methods"][2]["options"]["temperature"] == [0.25, 0.25]
    # the reference variant of each method is the one with its default options
    assert [m.reference for m in s.config.methods] == [True, True, False]


@pytest.mark.parametrize("training,precision", [
    ("{}", "fp32"), ("{precision: auto}", "auto"), ("{precision: bf16}", "bf16"),
    ("{amp: true}", "fp16"), ("{amp: false}", "fp32"), ("{amp: null, precision: fp16}", "fp16")])
def test_precision_and_its_old_spelling_amp(tmp_path, training, precision):
    s = load_suite(write(tmp_path, MINIMAL + f"training: {training}\n"))
    assert s.config.training.precision == precision
    assert s.resolved()["training"]["precision"] == precision
    assert "amp" not in s.resolved()["training"]


def test_name_may_be_any_text(tmp_path):
    s = load_suite(write(tmp_path, MINIMAL.replace("name: mini", 'name: "<script>x</script> 1"')))
    assert s.name == "<script>x</script> 1"
    assert s.slug == "script-x-script-1"


def test_budget_fractions_resolve_against_per_exit_costs(tmp_path):
    s = load_suite(write(tmp_path, SMALL))
    model = backbones.create("chain_tiny", num_classes=10)
    exits = [m / 1e6 for m in flops.per_exit(model)]
    for r in s.runs:
        assert list(r.exit_mmacs) == exits
        assert r.budgets_mmacs == pytest.approx([0.5 * exits[-1], exits[-1]])


BAD = [
    # (suite text, key path in the message, other text in the message)
    (MINIMAL + "trainig: {epochs: 3}\n", "trainig", "allowed: name, description"),
    (MINIMAL.replace("name: mini\n", ""), "name", "required"),
    (MINIMAL + "training: {epochs: three}\n", "training.epochs", "expected an integer"),
    (MINIMAL + "training: {epochs: true}\n", "training.epochs", "found True (bool)"),
    (MINIMAL + "training: {optimizer: {lr: -1}}\n", "training.optimizer.lr", "found -1"),
    (MINIMAL + "training: {optimizer: {name: adam}}\n", "training.optimizer.name", "sgd"),
    (MINIMAL + "training: {schedule: {name: cosine, milestones: [0.5]}}\n",
     "training.schedule.milestones", "allowed: name"),
    (MINIMAL + "training: {schedule: {milestones: [0.75, 0.5]}}\n",
     "training.schedule.milestones", "increasing"),
    (MINIMAL + "training: {device: gpu}\n", "training.device", "cuda:N"),
    (MINIMAL + "training: {drop_last: 'no'}\n", "training.drop_last", "true or false"),
    (MINIMAL + "training: {precision: fp64}\n", "training.precision",
     "known: auto, fp32, bf16, fp16"),
    (MINIMAL + "training: {amp: 'yes'}\n", "training.amp", "true or false"),
    (MINIMAL + "training: {amp: true, precision: bf16}\n", "training.amp",
     "old spelling of training.precision (amp true: fp16, false: fp32); give only"),
    (MINIMAL.replace("{name: synthetic}", "{name: cifar10, options: {normalization: boost}}"),
     "dataset.options.normalization", "known: standard, reference"),
    (MINIMAL.replace("{name: synthetic}",
                     "{name: fashion_mnist, options: {normalization: reference}}"),
     "dataset.options.normalization", "allowed: augment"),
    (MINIMAL + "seeds: 0\n", "seeds", "expected a non-empty list"),
    (MINIMAL + "seeds: [0, 4294967296]\n", "seeds[1]", "[0, 2**32), at most 4294967295"),
    (MINIMAL + f"seeds: [{10 ** 30}]\n", "seeds[0]", "found 1000000000000000000000000000000"),
    (MINIMAL + "seeds: [-1]\n", "seeds[0]", "found -1"),
    (MINIMAL.replace("[joint]", "[{name: boostnet, options: {temperature: tuned}}]")
     + "tune: {objective: anytime, sampler: {name: tpe, seed: 4294967296}}\n",
     "tune.sampler.seed",
     "at most 4294967295"),
    (MINIMAL.replace("synthetic", "cifar1000"), "dataset.name", "cifar100, fashion_mnist"),
    (MINIMAL.replace("{name: synthetic}", "{name: synthetic, options: {size: 3}}"),
     "dataset.options.size", "train_size"),
    (MINIMAL.replace("{name: synthetic}", "{name: synthetic, heldout: 0}"),
     "dataset.heldout", "at least 1 image"),
    (MINIMAL.replace("{name: synthetic}", "{name: synthetic, heldout: 5000}"),
     "dataset.heldout", "train_size"),
    (MINIMAL.replace("{name: synthetic}", "{name: synthetic, options: {image_size: 16}}"),
     "backbones[0]", "[3, 32, 32], data set 'synthetic' gives [3, 16, 16]"),
    (MINIMAL.replace("[chain_tiny]", "[chain_tiny, resnet]"), "backbones[1].name",
     "known: chain_tiny"),
    (MINIMAL.replace("[chain_tiny]", "[{name: chain_tiny, overrides: {widht: 3}}]"),
     "backbones[0].overrides.widht", "cannot be built with overrides {'widht': 3}"),
    (MINIMAL.replace("[chain_tiny]", "[chain_tiny, chain_tiny]"), "backbones[1].label",
     "already used by backbones[0]"),
    (MINIMAL.replace("[chain_tiny]", "[{name: chain_tiny, label: 'a b'}]"),
     "backbones[0].label", "letters, digits"),
    (MINIMAL.replace("[joint]", "[joint, boost]"), "methods[1].name", "boostnet, imta, joint, kd"),
    (MINIMAL.replace("[joint]", "[joint, {name: boostnet, options: {temprature: 0.2}}]"),
     "methods[1].options.temprature", "allowed: temperature, grad_rescale"),
    (MINIMAL.replace("[joint]", "[joint, {name: boostnet, options: {temperature: [1, 2, 3, 4]}}]"),
     "methods[1].options.temperature", "3 exits"),
    (MINIMAL.replace("[joint]", "[{name: boostnet, options: {grad_rescale: 'no'}}]"),
     "methods[0].options.grad_rescale", "true or false"),
    (MINIMAL.replace("[joint]", "[{name: joint, options: {loss_weights: [1, 1]}}]"),
     "methods[0].options.loss_weights", "3 exits"),
    (MINIMAL.replace("[joint]", "[joint, sequential]") + "training: {epochs: 2}\n",
     "training.epochs", "'sequential' on backbone 'chain_tiny' (3 exits): 3 training stages"),
    (MINIMAL + "budgets: {mmacs: [0.1]}\n", "budgets.mmacs[0]",
     "range of backbone 'chain_tiny': 0.25..0.85 MMACs"),
    (MINIMAL + "budgets: {fractions: [0.1]}\n", "budgets.fractions[0]", "0.25..0.85 MMACs"),
    (MINIMAL + "budgets: {fractions: [1.5]}\n", "budgets.fractions[0]",
     "expected a number <= 1, found 1.5 (float)"),
    (MINIMAL + "budgets: {mmacs: [0.5], fractions: [0.5]}\n", "budgets", "at most one"),
    (MINIMAL + "tune: 3\n", "tune", "a mapping"),
    (MINIMAL + "description: 2023-01-01\n", "description", "a string"),
]


@pytest.mark.parametrize("text,path,detail", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_suites_name_file_and_key(tmp_path, text, path, detail):
    file = write(tmp_path, text, "bad-suite.yaml")
    with pytest.raises(SuiteError) as err:
        load_suite(file)
    message = str(err.value)
    assert message.startswith(f"{file}: {path}: "), message
    assert detail in message, message
    assert err.value.path == path


@pytest.mark.parametrize("text,detail", [
    ("name: x\ndataset: {name: synthetic\nbackbones: [chain_tiny]\n", "line 3"),
    ("name: x\nname: y\n", "duplicate key 'name'"),
    ("", "found an empty file"),
    ("- a\n- b\n", "expected a mapping of suite keys"),
    (MINIMAL + "description: &d text\ntraining: {device: *d}\n",
     "line 6, column 20: invalid YAML: found the alias *d: aliases are not allowed"),
    (MINIMAL + "training: &t {epochs: 2}\ntune: {<<: *t}\n", "found the alias *t"),
    (MINIMAL + "description: " + "[" * 200 + "]" * 200 + "\n", "more than 100 levels"),
])
def test_bad_yaml(tmp_path, text, detail):
    file = write(tmp_path, text, "broken.yaml")
    with pytest.raises(SuiteError, match="broken.yaml") as err:
        load_suite(file)
    assert detail in str(err.value)


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    """Nine levels of nine aliases would expand to 9**9 items (gigabytes); refused at the
    first alias, before anything is expanded."""
    lines = ["name: bomb", "a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, key in zip("abcdefghi", "bcdefghij"):
        lines.append(f"{key}: &{key} [{', '.join(['*' + prev] * 9)}]")
    file = write(tmp_path, "\n".join(lines) + "\n", "bomb.yaml")
    started = time.perf_counter()
    with pytest.raises(SuiteError, match=r"bomb\.yaml: line 3, column 8: .*alias \*a"):
        load_suite(file)
    assert time.perf_counter() - started < 1.0


def test_the_largest_seed_is_fine(tmp_path):
    s = load_suite(write(tmp_path, MINIMAL + "seeds: [0, 4294967295]\n"))
    assert s.config.seeds == (0, 4294967295)


def test_missing_file(tmp_path):
    with pytest.raises(SuiteError, match=r"nope\.yaml: no such file"):
        load_suite(tmp_path / "nope.yaml")


def test_scientific_notation_is_a_number(tmp_path):
    s = load_suite(write(tmp_path, MINIMAL + "training: {optimizer: {weight_decay: 5e-4}}\n"))
    assert s.config.training.optimizer.weight_decay == 5e-4


def test_overrides(tmp_path):
    file = write(tmp_path, SMALL)
    s = load_suite(file, ["training.epochs=5", "seeds=[7]", "methods[1].options.temperature=0.25",
                          "dataset.subset.train=100", "budgets={mmacs: [0.5]}"])
    c = s.resolved()
    assert c["training"]["epochs"] == 5 and c["seeds"] == [7]
    assert c["methods"][1] == {
        "name": "boostnet", "label": "boostnet",
        "options": {"loss_weights": None, "temperature": 0.25, "joint": True,
                    "freeze_previous": True, "grad_rescale": True}, "reference": False}
    assert c["dataset"]["subset"] == {"train": 100, "test": None}
    assert [r.budgets_mmacs for r in s.runs] == [(0.5,)] * 3
    assert s.overrides[0] == "training.epochs=5"
    assert load_suite(file, ["description='a: b'"]).config.description == "a: b"


@pytest.mark.parametrize("override,detail", [
    ("training.epochs", "expected KEY.PATH=VALUE"),
    ("training..epochs=3", "expected KEY.PATH=VALUE"),
    ("methods[x].label=a", "expected KEY.PATH=VALUE"),
    ("methods[5].label=a", "methods: override 'methods[5].label=a': methods has 3 items"),
    ("seeds[0].x=1", "seeds[0] is 0 (int), not a mapping"),
    ("training.epochs=[1", "invalid YAML"),
    ("training.epochs=0", "training.epochs: expected an integer >= 1, found 0 (int) "
                          "(set by override 'training.epochs=0')"),
    ("trainig.epochs=3", "trainig: unknown key 'trainig'"),
])
def test_bad_overrides(tmp_path, override, detail):
    file = write(tmp_path, SMALL, "over.yaml")
    with pytest.raises(SuiteError) as err:
        load_suite(file, [override])
    assert str(err.value).startswith(f"{file}: ") and detail in str(err.value), str(err.value)
    assert override in str(err.value)


def _ids(file, overrides=()):
    return [r.run_id for r in load_suite(file, overrides).runs]


def test_run_ids_are_stable_across_processes(tmp_path):
    file = write(tmp_path, SMALL)
    code = ("import json, sys; from bench.config import load_suite; "
            "print(json.dumps([r.run_id for r in load_suite(sys.argv[1]).runs]))")
    out = subprocess.run([sys.executable, "-c", code, str(file)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == _ids(file)


def test_run_ids_change_with_the_config(tmp_path):
    file = write(tmp_path, SMALL)
    base = _ids(file)
    assert len(set(base)) == 6
    assert base[0].startswith("chain_tiny--joint--s0--") and base[-1].startswith(
        "chain_tiny--bn-t25--s1--")
    for change in ["training.epochs=4", "training.optimizer.lr=0.05", "dataset.heldout=50",
                   "budgets.fractions=[0.6]", "dataset.options.data_seed=1",
                   "backbones[0].overrides={channels: [8, 16, 24]}"]:
        changed = _ids(file, [change])
        assert all(a != b for a, b in zip(base, changed)), change
    changed = _ids(file, ["methods[1].options.grad_rescale=false"])
    assert [a == b for a, b in zip(base, changed)] == [True, True, False, False, True, True]
    # The same config written differently gives the same ids.
    assert _ids(file, ["methods[1].options.temperature=0.5", "training.amp=false"]) == base
    assert _ids(file, ["methods[2].options.temperature=[0.25, 0.25]",
                       "training.optimizer.momentum=0.9"]) == base
    assert (_ids(file, ["methods[1].options.temperature=1"])
            == _ids(file, ["methods[1].options.temperature=1.0"]))
    # Where the data live and how many loader processes read them change no result.
    assert _ids(file, ["dataset.root=/elsewhere", "training.workers=4"]) == base


def test_select(tmp_path):
    runs = load_suite(write(tmp_path, SMALL)).runs
    assert [r.run_id for r in select(runs, "*")] == [r.run_id for r in runs]
    assert [r.method_label for r in select(runs, "*/boostnet/*")] == ["boostnet"] * 2
    assert [r.seed for r in select(runs, "*/*/1")] == [1, 1, 1]
    assert [r.method_label for r in select(runs, "*bn-t25--s0*")] == ["bn-t25"]
    assert select(runs, runs[2].run_id) == [runs[2]]
    assert select(runs, "nothing*") == []


def test_configs_are_typed_and_frozen(tmp_path):
    s = load_suite(write(tmp_path, SMALL))
    t = s.config.training
    assert (t.epochs, t.optimizer.lr, t.schedule.milestones) == (3, 0.1, (0.5, 0.75))
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        t.epochs = 5
    with pytest.raises(TypeError):
        s.config.methods[1].options["temperature"] = 1.0  # read-only mapping
    assert s.runs[0].training is t and s.runs[0].dataset is s.config.dataset


@pytest.mark.parametrize("options,path,detail", [
    ("{grad_rescale: tuned}", "methods[1].options.grad_rescale",
     "only for the options in method 'boostnet''s search space: temperature"),
    ("{temperature: tuned}", "methods[1].options.temperature", "needs a tune: section"),
])
def test_tuned_only_where_the_method_can_search(tmp_path, options, path, detail):
    text = MINIMAL.replace("[joint]", f"[joint, {{name: boostnet, options: {options}}}]")
    with pytest.raises(SuiteError) as err:
        load_suite(write(tmp_path, text))
    assert err.value.path == path and detail in err.value.message


def test_joint_has_nothing_to_tune(tmp_path):
    text = MINIMAL.replace("[joint]", "[{name: joint, options: {loss_weights: tuned}}]")
    with pytest.raises(SuiteError) as err:
        load_suite(write(tmp_path, text))
    assert err.value.path == "methods[0].options.loss_weights"
    assert "search space: it has none" in err.value.message


def test_tune_space_defaults_come_from_the_methods(tmp_path):
    text = SMALL + "tune: {runs: '*/boostnet', objective: anytime}\n"
    s = load_suite(write(tmp_path, text))
    assert s.config.tune.space.as_dict() == {"per_exit": False, "low": 0.05, "high": 2.0,
                                             "log": True}
    s = load_suite(write(tmp_path, text), ["tune.space={per_exit: true, high: 1.0}"])
    assert (s.config.tune.space.per_exit, s.config.tune.space.high) == (True, 1.0)


def test_the_slug_is_read_from_the_name_alone(tmp_path):
    from bench.config import read_name, slugify

    # nothing else is validated or built: an unknown backbone does not matter here
    path = write(tmp_path, MINIMAL.replace("chain_tiny", "no_such_backbone")
                 .replace("name: mini", "name: My Suite!"))
    assert slugify(read_name(path)) == "My-Suite"
    with pytest.raises(SuiteError, match="name: expected a non-empty string"):
        read_name(write(tmp_path, "dataset: {name: synthetic}\n", "noname.yaml"))


def test_baseline_defaults_to_joint_and_must_be_a_label(tmp_path):
    assert load_suite(write(tmp_path, SMALL)).config.baseline == "joint"
    s = load_suite(write(tmp_path, SMALL + "baseline: bn-t25\n"))
    assert s.config.baseline == "bn-t25"
    no_joint = SMALL.replace("  - joint\n", "")
    assert load_suite(write(tmp_path, no_joint)).config.baseline is None
    with pytest.raises(SuiteError) as err:
        load_suite(write(tmp_path, SMALL + "baseline: sequential\n"))
    assert err.value.path == "baseline"
    assert "'sequential' is not a method label of this suite; labels: joint, boostnet, bn-t25" \
        in err.value.message
