"""Tuning a method's options (BoostNet's ensemble temperature here) with Optuna on tiny
synthetic data (bench.pipeline.tuning, bench.config.tune, bench tune)."""
import json
import time

import pytest
import torch
import yaml

optuna = pytest.importorskip("optuna")

from bench import cli, store  # noqa: E402
from bench.config import (SuiteError, build_suite, load_suite, select_targets,  # noqa: E402
                          study_name)
from bench.pipeline import tuning  # noqa: E402
from bench.report.tuning import study_figures  # noqa: E402

BASE = {
    "name": "tiny-tune",
    "dataset": {"name": "synthetic", "heldout": 64,
                "options": {"num_classes": 4, "image_size": 16, "train_size": 256,
                            "test_size": 64, "augment": False}},
    "backbones": [{"name": "chain_tiny", "overrides": {"image_size": 16}}],
    "methods": ["joint", {"name": "boostnet", "label": "boost-tuned",
                          "options": {"temperature": "tuned"}}],
    "training": {"epochs": 2, "batch_size": 32, "device": "cpu",
                 "schedule": {"name": "constant"}, "optimizer": {"lr": 0.05}},
    "budgets": {"fractions": [0.6, 0.8]},
    "evaluation": {"calibration": True},
    "tune": {"trials": 1, "space": {"low": 0.1, "high": 1.5}, "pruner": "none"},
}


def write(tmp_path, raw, name="suite.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def tune(suite, results, *overrides, storage=None, quiet=False):
    """``bench tune`` in this process; its exit code."""
    args = ["tune", suite, "--results", str(results)] + (["--quiet"] if quiet else [])
    args += [a for o in overrides for a in ("--set", o)]
    return cli.main(args + (["--storage", storage] if storage else []))


def storage_of(results):
    return store.Suite(results / "tiny-tune").default_storage()


def trials(study_name, storage):
    return optuna.load_study(study_name=study_name, storage=storage).get_trials()


def test_study_baseline_pruning_resume_and_tuned_run(tmp_path, capsys):
    suite = write(tmp_path, BASE)
    results = tmp_path / "results"
    assert tune(suite, results) == 0
    assert "[trial 0] boost-tuned" in capsys.readouterr().err  # a training bar per trial
    (spec,) = select_targets(load_suite(suite))
    assert spec.method_label == "boost-tuned"
    name = study_name(spec, load_suite(suite).config.tune)
    storage = storage_of(results)
    (t0,) = trials(name, storage)
    # The method's own default (the paper's t = 0.5) is the first trial.
    assert t0.params == {"temperature": 0.5} and t0.user_attrs["baseline"]
    assert t0.state.name == "COMPLETE" and len(t0.intermediate_values) == 2

    # Resume with a pruner that stops any trial below 101 % held-out top-1: the new trial
    # is pruned after its first epoch. Pruner and trial count are not part of the study
    # name, so the same study grows.
    assert tune(suite, results, "tune.trials=2", "tune.pruner={name: threshold, lower: 101}") == 0
    assert study_name(spec, load_suite(suite, ["tune.trials=2"]).config.tune) == name
    ts = trials(name, storage)
    assert [t.state.name for t in ts] == ["COMPLETE", "PRUNED"]
    assert list(ts[1].intermediate_values) == [1]
    assert 0.1 <= ts[1].params["temperature"] <= 1.5

    # Resume again (median pruner, the default): one more trial in the same study.
    capsys.readouterr()
    assert tune(suite, results, "tune.trials=3", "tune.pruner=median", quiet=True) == 0
    assert "[trial" not in capsys.readouterr().err
    ts = trials(name, storage)
    assert len(ts) == 3 and ts[0].params == {"temperature": 0.5}
    best = json.loads((results / "tiny-tune" / "tuning" / f"{name}.json").read_text())
    complete = [t for t in ts if t.state.name == "COMPLETE"]
    top = max(complete, key=lambda t: t.value)
    assert best["study"] == name and best["trial"] == top.number
    assert best["options"] == {"temperature": top.params["temperature"]}
    assert best["value"] == top.value
    assert best["baseline"] == {"trial": 0, "value": ts[0].value, "options": {"temperature": 0.5}}
    assert best["storage"] == storage

    # A run with temperature: tuned takes the best trial and says where it came from.
    code = cli.main(["run", suite, "--results", str(results), "--no-report", "--quiet"])
    assert code == 0
    (run_dir,) = (results / "tiny-tune").glob("chain_tiny--boost-tuned--*")
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert config["method"]["options"]["temperature"] == "tuned"
    for source in (config["tuned"], metrics["tuned"]):
        assert (source["study"], source["trial"]) == (name, top.number)
        assert source["options"] == {"temperature": top.params["temperature"]}
    # Calibration (post-hoc, per exit) is reported next to the budgeted results.
    cal = metrics["calibration"]
    assert len(cal["calibration_temperatures"]) == 3 and len(cal["ece_after"]) == 3
    assert [b["budget_mmacs"] for b in cal["budgeted_after"]] == \
        [b["budget_mmacs"] for b in metrics["budgeted"]]

    figures = study_figures(store.Suite(results / "tiny-tune"))
    titles = [t for t, _ in figures]
    assert any("optimization history" in t for t in titles)
    assert all(hasattr(f, "to_html") for _, f in figures)
    # ... and the suite's report page shows them.
    from bench import report
    report.render(results, tmp_path / "reports")
    page = (tmp_path / "reports" / "tiny-tune" / "index.html").read_text()
    assert "Tuning (Optuna)" in page and page.count('class="plot"') >= 3


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path, capsys):
    # t_n around 1e30 overflows the ensemble F_3 = t F_2 + f_3 in float32: the loss is not
    # finite and every trial fails, recorded as FAIL, without stopping the study.
    raw = {**BASE, "tune": {"trials": 2, "space": {"low": 1e30, "high": 1e31},
                            "pruner": "none", "epochs": 1}}
    suite = write(tmp_path, raw)
    results = tmp_path / "results"
    assert tune(suite, results) == 0
    spec = select_targets(load_suite(suite))[0]
    name = study_name(spec, load_suite(suite).config.tune)
    ts = trials(name, storage_of(results))
    assert [t.state.name for t in ts] == ["FAIL", "FAIL"]
    assert not (results / "tiny-tune" / "tuning" / f"{name}.json").exists()
    # Without a best trial a tuned run is a clear error, before anything is trained.
    code = cli.main(["run", suite, "--results", str(results), "--no-report", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "temperature: tuned" in err and name in err and "bench tune" in err


def test_storage_url_option(tmp_path):
    raw = {**BASE, "tune": {"trials": 1, "objective": "anytime", "epochs": 1}}
    suite = write(tmp_path, raw)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert tune(suite, tmp_path / "results", storage=url) == 0
    assert len(optuna.get_all_study_names(url)) == 1
    assert not (tmp_path / "results" / "tiny-tune" / "tuning" / "optuna.db").exists()


def test_parameters_and_option_values():
    raw = {**BASE, "methods": ["joint", "boostnet"], "tune": {"space": {"per_exit": True}}}
    (spec,) = select_targets(build_suite(raw, "s.yaml"))
    assert tuning.param_names(spec, True) == {"temperature": ["t_2", "t_3"]}
    assert tuning.param_names(spec, False) == {"temperature": ["temperature"]}
    assert tuning.options_from_params(spec, {"t_2": 0.3, "t_3": 0.7}, True) == \
        {"temperature": [0.3, 0.7]}
    assert tuning.default_params(spec, True) == {"t_2": 0.5, "t_3": 0.5}


def test_heldout_objective_uses_disjoint_halves():
    torch.manual_seed(0)
    targets = torch.arange(40) % 4
    logits = torch.randn(3, 40, 4)
    logits[2, torch.arange(40), targets] += 10.0  # the last exit is always right
    anytime = tuning.heldout_objective(logits, targets, [1.0, 2.0, 3.0], [], "anytime", 0)
    assert anytime["value"] == pytest.approx(sum(anytime["anytime"]) / 3)
    assert anytime["anytime"][2] == 100.0
    full = tuning.heldout_objective(logits, targets, [1.0, 2.0, 3.0], [3.0], "budgeted", 0)
    assert full["value"] == 100.0  # the whole budget: every sample reaches the last exit
    low = tuning.heldout_objective(logits, targets, [1.0, 2.0, 3.0], [1.0], "budgeted", 0)
    assert low["value"] == pytest.approx(anytime["anytime"][0])  # everyone leaves at exit 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_the_trial_of_a_dead_worker_is_failed_and_retried(tmp_path, monkeypatch):
    """A worker killed in trial 2 of 3 leaves it RUNNING with a heartbeat that stops; the
    next bench tune, once the heartbeat is older than the grace period, marks it failed
    and runs its parameters again (not "2 complete, 1 running" and nothing done)."""
    monkeypatch.setattr(tuning, "HEARTBEAT_S", 1)
    monkeypatch.setattr(tuning, "GRACE_S", 1)
    raw = {**BASE, "tune": {"trials": 2, "objective": "anytime", "pruner": "none",
                            "epochs": 1, "space": {"low": 0.1, "high": 1.5}}}
    suite = write(tmp_path, raw)
    results = tmp_path / "results"
    assert tune(suite, results, quiet=True) == 0
    spec = select_targets(load_suite(suite))[0]
    name = study_name(spec, load_suite(suite).config.tune)
    study = optuna.load_study(study_name=name,
                              storage=tuning.open_storage(storage_of(results)))
    dead = study.ask({"temperature": optuna.distributions.FloatDistribution(0.1, 1.5,
                                                                             log=True)})
    study._storage.record_heartbeat(dead._trial_id)  # then the worker is killed
    # SQLite's CURRENT_TIMESTAMP has whole seconds: 1.5 s can read as 1 s, not older than
    # the 1 s grace period; 2.5 s reads as at least 2 s.
    time.sleep(2.5)
    assert tune(suite, results, "tune.trials=3", quiet=True) == 0
    ts = trials(name, storage_of(results))
    assert [t.state.name for t in ts] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert ts[3].params == ts[2].params and ts[3].system_attrs["failed_trial"] == 2
    assert tune(suite, results, "tune.trials=3", quiet=True) == 0  # nothing left to do
    assert len(trials(name, storage_of(results))) == 4


def test_a_dead_workers_trial_does_not_count_in_a_journal(tmp_path):
    """Journal storage has no heartbeats: the RUNNING trial of a dead worker stays, and the
    next worker runs another in its place."""
    raw = {**BASE, "tune": {"trials": 1, "objective": "anytime", "pruner": "none",
                            "epochs": 1, "space": {"low": 0.1, "high": 1.5}}}
    suite = write(tmp_path, raw)
    journal = f"journal:{tmp_path / 'studies.log'}"
    spec = select_targets(load_suite(suite))[0]
    name = study_name(spec, load_suite(suite).config.tune)
    study = optuna.create_study(study_name=name, storage=tuning.open_storage(journal),
                                direction="maximize")
    study.ask()  # a worker that died in its first trial
    assert tune(suite, tmp_path / "results", storage=journal, quiet=True) == 0
    states = [t.state.name for t in optuna.load_study(
        study_name=name, storage=tuning.open_storage(journal)).get_trials()]
    assert states == ["RUNNING", "COMPLETE"]
