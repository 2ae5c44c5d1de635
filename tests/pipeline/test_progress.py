"""Progress output: a line per run and a bar per run that resumes where the run stands."""

from bench import store
from bench.config import build_suite
from bench.pipeline.progress import Progress

SUITE = {"name": "p", "dataset": {"name": "synthetic", "heldout": 10,
                                  "options": {"train_size": 50}},
         "backbones": ["chain_tiny"], "methods": ["joint"], "training": {"epochs": 4}}


def test_a_resumed_run_starts_its_bar_at_its_checkpoint(tmp_path, capsys):
    (spec,) = build_suite(SUITE, "p.yaml").runs
    run = store.Suite(tmp_path).run(spec.run_id)
    run.set_status("running", epoch=3, epochs=4, fingerprint="x")
    store.save_checkpoint(run.checkpoint_path, model={}, optimizer={}, scaler={}, stage=0,
                          epoch=3, history=[])
    progress = Progress(total_runs=1)
    progress.start_run(1, spec)
    show = progress.epoch_callback(spec, run)
    assert (progress.bar.n, progress.bar.total) == (3, 4)
    show({"epoch": 4, "stage": 1, "rows": [{"train_loss": 0.5, "heldout_top1": float("nan")}]})
    assert progress.bar.n == 4
    progress.end_run("done")
    err = capsys.readouterr().err
    assert f"[run 1/1] {spec.run_id}" in err and "-> done" in err
    assert Progress(1, enabled=False).epoch_callback(spec, run) is None
