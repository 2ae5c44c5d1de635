"""training.regime, training.backbone_epochs and a method entry's regime in the suite schema:
defaults, labels, errors naming the key, per-method refusals and run ids (a suite that does
not mention regimes keeps its ids)."""
import textwrap

import pytest

from bench.config import load_suite
from bench.errors import SuiteError

SUITE = """\
name: regimes
dataset: {name: synthetic, heldout: 100, options: {train_size: 500}}
backbones: [chain_tiny]
methods: [joint, boostnet]
seeds: [0]
training: {epochs: 4}
"""


pytestmark = pytest.mark.usefixtures("fresh_cache")


def load(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return load_suite(path)


def with_methods(methods: str, training: str = "{epochs: 4}") -> str:
    return (SUITE.replace("methods: [joint, boostnet]", f"methods: {methods}")
            .replace("training: {epochs: 4}", f"training: {training}"))


def test_joint_by_default_without_a_split(tmp_path):
    suite = load(tmp_path, SUITE)
    t = suite.config.training
    assert (t.regime, t.backbone_epochs) == ("joint", None)
    assert all(r.training.regime == "joint" and r.training.backbone_epochs is None
               for r in suite.runs)


def test_the_split_defaults_to_half_of_the_epochs(tmp_path):
    suite = load(tmp_path, with_methods("[joint]", "{epochs: 5, regime: mixed}"))
    (run,) = suite.runs
    assert (run.training.regime, run.training.backbone_epochs) == ("mixed", 2)
    assert run.config["training"]["regime"] == "mixed"
    assert run.config["training"]["backbone_epochs"] == 2
    assert run.method_label == "joint"  # the suite's regime leaves labels alone


def test_a_method_entry_gives_its_own_regime_and_label(tmp_path):
    suite = load(tmp_path, with_methods(
        "[boostnet, {name: boostnet, regime: mixed}, {name: joint, regime: disjoint, "
        "label: frozen}, {name: joint, regime: joint}]", "{epochs: 4, backbone_epochs: 1}"))
    got = [(r.method_label, r.training.regime, r.training.backbone_epochs) for r in suite.runs]
    assert got == [("boostnet", "joint", None), ("boostnet-mixed", "mixed", 1),
                   ("frozen", "disjoint", 1), ("joint", "joint", None)]


BAD = [
    ("{epochs: 4, regime: frozen}", "[joint]", "training.regime",
     "unknown training regime 'frozen'; known: joint, disjoint, mixed"),
    ("{epochs: 4}", "[{name: joint, regime: both}]", "methods[0].regime",
     "unknown training regime 'both'"),
    ("{epochs: 4, backbone_epochs: 2}", "[joint]", "training.backbone_epochs",
     "every method here trains under regime joint"),
    ("{epochs: 4, regime: joint, backbone_epochs: 2}", "[joint, boostnet]",
     "training.backbone_epochs", "regime joint"),
    ("{epochs: 4, regime: mixed, backbone_epochs: 4}", "[joint]", "training.backbone_epochs",
     "must leave phase 2 some, found 4"),
    ("{epochs: 4, regime: mixed, backbone_epochs: -1}", "[joint]", "training.backbone_epochs",
     "expected an integer >= 0, found -1"),
    ("{epochs: 4, regime: mixed, backbone_epochs: 1.5}", "[joint]", "training.backbone_epochs",
     "expected an integer"),
    ("{epochs: 4, regime: mixed, backbone_epochs: 0}", "[joint]", "training.backbone_epochs",
     "backbone 'chain_tiny' has neither overrides.pretrained nor overrides.pretrained_file"),
    ("{epochs: 1, regime: disjoint}", "[joint]", "training.epochs", "at least 2 epochs"),
    ("{epochs: 4, regime: mixed, backbone_epochs: 2}", "[sequential]", "training.epochs",
     "3 training stages need at least 3 epochs, got 2"),
    # per-method refusals: one line naming the method, the regime and why
    ("{epochs: 4, regime: disjoint}", "[joint, boostnet]", "training.regime",
     "method 'boostnet' (boostnet) has no meaning under regime 'disjoint': gradient "
     "rescaling acts on the gradients that reach the backbone"),
    ("{epochs: 4}", "[joint, {name: sequential, regime: disjoint}]", "methods[1].regime",
     "method 'sequential-disjoint' (sequential) has no meaning under regime 'disjoint'"),
    ("{epochs: 4}", "[{name: ztw, regime: mixed, options: {frozen_share: 0.5}}]",
     "methods[0].regime", "frozen_share is ZTW's own split"),
    ("{epochs: 4}", "[{name: imta, regime: disjoint}]", "methods[0].regime",
     "give options.grad_rescale: false"),
    ("{epochs: 4, regime: mixed, backbone_epochs: 2}\ntune: {trials: 1, epochs: 2, "
     "objective: anytime}",
     "[{name: boostnet, options: {temperature: tuned}}]", "tune.epochs",
     "after 2 epochs of phase 1 and needs at least 3 epochs"),
    ("{epochs: 4}", "[{name: joint, regime: mixed}, {name: joint, regime: mixed}]",
     "methods[1].label", "'joint-mixed' is already used"),
]


@pytest.mark.parametrize("training,methods,path,detail", BAD,
                         ids=[f"{b[2]}:{b[3][:24]}" for b in BAD])
def test_bad_regimes_name_the_key(tmp_path, training, methods, path, detail):
    with pytest.raises(SuiteError) as err:
        load(tmp_path, with_methods(methods, training))
    assert err.value.path == path, str(err.value)
    assert detail in str(err.value)
    assert "\n" not in str(err.value)


def test_a_tuned_option_stands_in_with_its_default_for_the_check(tmp_path):
    text = with_methods("[{name: boostnet, regime: disjoint, options: {grad_rescale: false, "
                        "temperature: tuned}}]") + "tune: {trials: 1, objective: anytime}\n"
    (run,) = load(tmp_path, text).runs
    assert run.training.regime == "disjoint"


def ids(tmp_path, text):
    return [r.run_id for r in load(tmp_path, text).runs]


def test_a_suite_that_does_not_mention_regimes_keeps_its_ids(tmp_path):
    pinned = ids(tmp_path, SUITE)
    assert ids(tmp_path, with_methods("[joint, boostnet]", "{epochs: 4, regime: joint}")) \
        == pinned
    # a joint run keeps its id beside runs of other regimes and their split
    mixed = ids(tmp_path, with_methods("[joint, boostnet, {name: joint, regime: mixed}]",
                                       "{epochs: 4, backbone_epochs: 1}"))
    assert mixed[:2] == pinned


def test_the_regime_and_the_split_change_the_id(tmp_path):
    pinned = ids(tmp_path, SUITE)
    mixed = ids(tmp_path, with_methods("[joint, boostnet]", "{epochs: 4, regime: mixed}"))
    split = ids(tmp_path, with_methods("[joint, boostnet]",
                                       "{epochs: 4, regime: mixed, backbone_epochs: 1}"))
    disjoint = ids(tmp_path, with_methods("[joint, {name: boostnet, options: {grad_rescale: "
                                          "false}}]", "{epochs: 4, regime: disjoint}"))
    assert len(set(pinned + mixed + split + disjoint)) == 8
    assert [i.split("--")[1] for i in mixed] == ["joint", "boostnet"]  # labels as they were
