"""training.cuda_graphs in a suite: what it takes, what is refused as the suite loads (true
on an explicit CPU device, with fp16 or compile, with a method whose step cannot be
recorded, each in one line naming the key), and the run ids (false, the default, keeps the
ids runs had before the key existed)."""
import textwrap

import pytest
import torch

from bench import cli
from bench.config import load_suite
from bench.errors import SuiteError

SUITE = """\
name: graphs
dataset: {name: synthetic, heldout: 100, options: {train_size: 500}}
backbones: [chain_tiny]
methods: [joint, boostnet]
seeds: [0]
training: {epochs: 3, device: DEVICE}
"""


def load(tmp_path, device="auto", *overrides):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE.replace("DEVICE", device)))
    return load_suite(path, list(overrides))


def ids(suite):
    return [r.run_id for r in suite.runs]


def test_it_takes_true_false_and_auto_and_defaults_to_false(tmp_path):
    assert load(tmp_path).config.training.cuda_graphs is False
    assert load(tmp_path, "auto", "training.cuda_graphs=auto").config.training.cuda_graphs \
        == "auto"
    assert load(tmp_path, "cuda", "training.cuda_graphs=true").config.training.cuda_graphs \
        is True
    with pytest.raises(SuiteError, match=r"training.cuda_graphs: expected true, false or "
                                         r"auto, found 'maybe' \(str\)"):
        load(tmp_path, "auto", "training.cuda_graphs=maybe")
    with pytest.raises(SuiteError, match=r"expected true, false or auto, found 1 \(int\)"):
        load(tmp_path, "auto", "training.cuda_graphs=1")


def test_false_keeps_the_ids_and_auto_or_true_give_new_ones(tmp_path):
    before = ids(load(tmp_path, "auto"))
    assert ids(load(tmp_path, "auto", "training.cuda_graphs=false")) == before
    auto = ids(load(tmp_path, "auto", "training.cuda_graphs=auto"))
    true = ids(load(tmp_path, "auto", "training.cuda_graphs=true"))
    assert len(set(before + auto + true)) == 3 * len(before)


@pytest.mark.parametrize("device", ["cpu"])
def test_true_on_an_explicit_cpu_is_refused_in_one_line(tmp_path, device):
    with pytest.raises(SuiteError) as err:
        load(tmp_path, device, "training.cuda_graphs=true")
    message = str(err.value)
    assert "\n" not in message
    assert "training.cuda_graphs is true, but training.device is cpu: CUDA graphs need a " \
           "CUDA device; use auto or false" in message
    assert load(tmp_path, device, "training.cuda_graphs=auto").config.training.cuda_graphs \
        == "auto"  # auto on a CPU: eager, nothing said


@pytest.mark.parametrize("setting, why", [
    ("training.precision=fp16", "training.precision is fp16, whose gradient scaler"),
    ("training.compile=true", "training.compile records CUDA graphs of the forward itself")])
def test_true_with_settings_that_cannot_be_recorded_is_refused(tmp_path, setting, why):
    with pytest.raises(SuiteError, match=f"training.cuda_graphs is true, but {why}"):
        load(tmp_path, "cuda", "training.cuda_graphs=true", setting)


def test_true_with_a_method_that_cannot_be_recorded_names_the_method(tmp_path):
    with pytest.raises(SuiteError) as err:
        load(tmp_path, "cuda", "training.cuda_graphs=true",
             "methods=[joint, {name: l2w, label: weighted}]")
    message = str(err.value)
    assert "training.cuda_graphs: training.cuda_graphs is true, but method 'weighted' " \
           "(methods[1]) cannot be recorded as a CUDA graph: its step branches" in message
    suite = load(tmp_path, "cuda", "training.cuda_graphs=auto",
                 "methods=[joint, {name: l2w, label: weighted}]")
    assert len(suite.runs) == 2  # auto: l2w's runs take eager steps


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_run_refuses_true_where_auto_resolves_to_a_cpu(tmp_path, capsys, monkeypatch):
    load(tmp_path, "auto")  # writes suite.yaml
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "suite.yaml", "--set", "training.cuda_graphs=true",
                     "--no-report", "--quiet"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: training.cuda_graphs is true, but this machine trains on cpu: "
                     "CUDA graphs need a CUDA device (use auto or false)"]
    assert not list((tmp_path / "results").glob("*/*/checkpoint.pt"))
