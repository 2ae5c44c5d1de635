"""Progress output: one line per run, and while it trains one bar that moves with every
step of the epoch (images/s, ETA, running loss), starting where a resumed run stands;
nothing with --quiet."""
import re

import pytest
import torch

from bench import cli, store
from bench.config import build_suite
from bench.executors import local
from bench.fingerprint import fingerprint
from bench.pipeline.distributed import Dist
from bench.pipeline.progress import Progress, TrainingBar
from bench.pipeline.setup import DataCache

SUITE = {"name": "p", "dataset": {"name": "synthetic", "heldout": 10,
                                  "options": {"train_size": 50}},
         "backbones": ["chain_tiny"], "methods": ["joint"], "training": {"epochs": 4}}


def step_info(epoch: int, step: int, steps: int = 5, loss: float = 2.0) -> dict:
    return {"epoch": epoch, "epochs": 4, "step": step, "steps": steps, "images": 8,
            "stage": 1, "stages": 1, "loss_sum": torch.tensor([loss * step, 0.0]),
            "active": (0,)}


def test_the_bar_counts_images_over_the_run_and_starts_where_a_resumed_run_stands(capsys):
    bar = TrainingBar("[run 1/1] joint s0", interval=0, lines=False)  # a terminal's bar
    assert "[run 1/1] joint s0: setting up" in capsys.readouterr().err
    bar.on_step(step_info(epoch=2, step=1))  # resumed after 2 of 4 epochs of 5 steps
    assert (bar.bar.n, bar.bar.total) == (11, 20)
    bar.on_epoch({"rows": [{"heldout_top1": 71.25}, {"heldout_top1": float("nan")}]})
    bar.on_step(step_info(epoch=2, step=2, loss=1.5))
    assert bar.bar.n == 12
    err = capsys.readouterr().err
    assert "epoch 3/4 step 2/5 loss 1.500 | held-out top-1 71.2 -" in err
    # 12 of the run's 20 steps; the rate in images (8 per step), and the ETA
    assert re.search(r"\[run 1/1\] joint s0  60%\|.*\| +[\d.]+ img/s, ETA \d\d:\d\d, "
                     r"epoch 3/4 step 2/5", err)
    bar.close()


def test_the_bar_names_the_phase_of_a_disjoint_or_mixed_run(capsys):
    bar = TrainingBar("[run 1/1] joint-mixed s0", interval=0, lines=False)
    bar.on_step({**step_info(epoch=0, step=1), "phase": 1, "stages": 2})
    bar.on_step({**step_info(epoch=2, step=1), "phase": 2, "stage": 2, "stages": 2})
    bar.close()
    err = capsys.readouterr().err
    assert "phase 1 (backbone alone) stage 1/2 epoch 1/4" in err
    assert "phase 2 (the method) stage 2/2 epoch 3/4" in err


@pytest.mark.parametrize("lines", [False, True], ids=["terminal", "log"])
def test_every_frame_shows_the_count_and_the_postfix_of_the_same_step(capsys, lines):
    # A log's interval: the bar redraws (in a log: writes a line) only when its postfix is
    # recomputed, so a frame never pairs a step's count with an older step's epoch and step.
    bar = TrainingBar("[run 1/1] joint s0", interval=3600, lines=lines)
    for epoch in range(2):
        for step in range(1, 6):
            bar.on_step(step_info(epoch=epoch, step=step))
        bar.on_epoch({"rows": [{"heldout_top1": 50.0}]})
    bar.close()
    frames = [f for f in re.split(r"[\r\n]", capsys.readouterr().err) if "epoch " in f]
    shown = [tuple(map(int, re.search(r"(\d+)%.*epoch (\d)/4 step (\d)/5", f).groups()))
             for f in frames]
    # the first step of each epoch is drawn (then the interval holds the bar still)
    assert shown == [(5, 1, 1), (30, 2, 1)]


def test_in_a_log_every_frame_is_a_line_of_its_own(capsys):
    # stderr captured by pytest is not a terminal: the default for a log or a pipe
    bar = TrainingBar("[run 1/1] joint s0", interval=0)
    assert bar.lines
    bar.on_step(step_info(epoch=2, step=1))  # resumed after 2 of 4 epochs of 5 steps
    bar.on_epoch({"rows": [{"heldout_top1": 71.25}]})
    bar.on_step(step_info(epoch=2, step=2, loss=1.5))
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err  # nothing redrawn, nothing erased
    lines = err.splitlines()
    assert lines[0] == "[run 1/1] joint s0: setting up"
    assert re.fullmatch(r"\[run 1/1\] joint s0  55%\|.*\| +[\d.]+ img/s, ETA \d\d:\d\d, "
                        r"epoch 3/4 step 1/5 loss 2\.000", lines[1])
    assert lines[2].endswith("epoch 3/4 step 2/5 loss 1.500 | held-out top-1 71.2")
    assert " 60%|" in lines[2] and len(lines) == 3


def test_a_suite_run_shows_steps_within_the_epoch_then_one_line(tmp_path, capsys):
    suite = build_suite({**SUITE, "training": {"epochs": 2, "batch_size": 8}}, "p.yaml")
    folder = store.Suite(tmp_path / "p")
    progress = Progress(len(suite.runs), interval=0)
    local.run_suite(suite, suite.runs, folder, DataCache(), Dist(), progress, fingerprint())
    err = capsys.readouterr().err
    run_id = suite.runs[0].run_id
    for step in range(1, 6):  # 40 training images, batch 8: 5 steps per epoch
        assert f"epoch 1/2 step {step}/5 loss " in err
        assert f"epoch 2/2 step {step}/5 loss " in err
    assert "img/s, ETA " in err
    final = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("[run")
             and "->" in line]
    assert len(final) == 1 and re.fullmatch(
        rf"\[run 1/1\] {run_id} -> done in \d+ s", final[0].strip())


def test_quiet_prints_no_bar(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(
        "name: q\ndataset: {name: synthetic, heldout: 10, options: {train_size: 30}}\n"
        "backbones: [chain_tiny]\nmethods: [joint]\ntraining: {epochs: 1, batch_size: 8}\n")
    args = ["run", str(tmp_path / "s.yaml"), "--results", str(tmp_path / "r"), "--no-report"]
    assert cli.main(args + ["--quiet"]) == 0
    err = capsys.readouterr().err
    assert "step" not in err and "[run" not in err and "img" not in err
    assert cli.main(args + ["--rerun-stale"]) == 0  # done: skipped, said in one line
    assert "(done, skipped)" in capsys.readouterr().err


def test_a_disabled_progress_draws_nothing(capsys):
    (spec,) = build_suite(SUITE, "p.yaml").runs
    progress = Progress(1, enabled=False)
    progress.start_run(1, spec)
    assert progress.callbacks() == (None, None)
    progress.end_run("done")
    assert capsys.readouterr().err == ""
