"""The suite's executor: section: checked like every section, applied by --executor and
--ray-address, and never part of a run id or of suite.json."""
import pytest

from bench import cli
from bench.config import build_suite
from bench.errors import SuiteError, UsageError
from bench.executors.common import chosen

SUITE = {
    "name": "where",
    "dataset": {"name": "synthetic", "heldout": 16,
                "options": {"train_size": 64, "test_size": 16, "image_size": 16,
                            "num_classes": 4}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint"],
    "training": {"epochs": 1, "device": "cpu"},
}


def test_defaults_and_run_ids():
    plain = build_suite(SUITE, "s.yaml")
    assert plain.config.executor.name == "local"
    assert plain.config.executor.ray.num_cpus == 1 and plain.config.executor.ray.num_gpus is None
    assert plain.config.executor.slurm.time_min == 1440
    other = build_suite({**SUITE, "executor": {"name": "slurm", "slurm": {"partition": "gpu",
                                                                          "gpus": 4}}}, "s.yaml")
    assert [r.run_id for r in plain.runs] == [r.run_id for r in other.runs]
    assert other.config.executor.slurm.partition == "gpu"
    assert "executor" not in other.resolved() and "executor" in other.config.as_dict()
    assert build_suite({**SUITE, "executor": "ray"}, "s.yaml").config.executor.name == "ray"


@pytest.mark.parametrize("section, where, says", [
    ({"name": "dask"}, "executor.name", "unknown executor 'dask'; known: local, ray, slurm"),
    ({"ray": {"results": "nfs"}}, "executor.ray.results",
     "unknown results mode 'nfs'; known: shared, driver"),
    ({"ray": {"num_cpus": -1}}, "executor.ray.num_cpus", "expected a number >= 0, found -1"),
    ({"ray": {"cpus": 1}}, "executor.ray.cpus", "unknown key 'cpus'"),
    ({"slurm": {"time_min": 0}}, "executor.slurm.time_min", "expected an integer >= 1"),
    ({"slurm": {"cluster": "pbs"}}, "executor.slurm.cluster", "known: slurm, local"),
])
def test_bad_options_name_the_key(section, where, says):
    with pytest.raises(SuiteError) as err:
        build_suite({**SUITE, "executor": section}, "s.yaml")
    assert err.value.path == where and says in err.value.message


def test_command_line_choices():
    suite = build_suite({**SUITE, "executor": {"name": "slurm"}}, "s.yaml")
    assert chosen(suite).name == "slurm"
    assert chosen(suite, "local").name == "local"
    joined = chosen(suite, None, "127.0.0.1:6379")
    assert joined.name == "ray" and joined.ray.address == "127.0.0.1:6379"
    with pytest.raises(UsageError, match="--ray-address is for the Ray executor"):
        chosen(suite, "slurm", "127.0.0.1:6379")


def test_torchrun_and_another_executor_do_not_mix(tmp_path, monkeypatch, capsys):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = cli.main(["run", str(path), "--executor", "ray", "--results",
                     str(tmp_path / "results"), "--no-report"])
    assert code == 2
    assert "start it with python, not torchrun" in capsys.readouterr().err
