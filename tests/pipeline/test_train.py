import math
import shutil

import pytest
import torch

import methods
from bench import backbones, data
from bench.backbones.common import parameters_per_exit
from bench.config import ScheduleConfig, StepSchedule, TrainingConfig
from bench.pipeline.train import (NonFiniteLoss, PeakMemory, Trainer, effective_shares,
                                  lr_factor)

TRAINING = {"epochs": 3, "batch_size": 32, "eval_batch_size": 128, "device": "cpu",
            "optimizer": {"lr": 0.05}}


@pytest.fixture(scope="module")
def splits():
    return data.load("synthetic", "unused", heldout=64, seed=0, train_subset=96,
                     test_subset=64, options={"train_size": 200, "test_size": 64,
                                              "image_size": 16})


def make_trainer(splits, tmp_path, method, epochs=3, **training):
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=10, image_size=16)
    cfg = TrainingConfig.model_validate({**TRAINING, "epochs": epochs, **training})
    return Trainer(model, methods.create(method), splits, cfg, seed=0,
                   device=torch.device("cpu"), checkpoint=tmp_path / "checkpoint.pt")


def test_lr_schedule_steps_at_fractions_of_the_stage():
    step = StepSchedule(milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_factor(e, 8, step) for e in range(8)] == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(0, 4, ScheduleConfig(name="cosine")) == 1.0
    assert lr_factor(2, 4, ScheduleConfig(name="cosine")) == pytest.approx(0.5)
    assert lr_factor(3, 4, ScheduleConfig(name="constant")) == 1.0


def test_the_trainer_takes_the_typed_training_config(splits, tmp_path):
    trainer = make_trainer(splits, tmp_path, "joint", schedule={"name": "constant"})
    assert trainer.training.optimizer.lr == 0.05 and trainer.training.schedule.name == "constant"
    assert trainer.training.optimizer.momentum == 0.9  # filled from the one table of defaults


def test_effective_shares_by_hand():
    losses = torch.tensor([[float(v) for v in range(10)], [9.0] * 5 + [0.0] * 5])
    # 10th percentile of exit 1's losses 0..9 is 0.9: 9 of 10 exceed it; exit 2: 5 of 10.
    assert effective_shares(losses).tolist() == pytest.approx([0.9, 0.5])


def test_history_has_a_row_per_epoch_and_exit(splits, tmp_path):
    state = make_trainer(splits, tmp_path, "boostnet").fit()
    assert state.epoch == 3 and len(state.history) == 9
    assert {r["exit"] for r in state.history} == {1, 2, 3}
    assert all(0 <= r["effective_share"] <= 1 for r in state.history)
    assert [r["lr"] for r in state.history[::3]] == pytest.approx([0.05, 0.05, 0.005])


def test_frozen_parameters_do_not_change_in_a_stage(splits, tmp_path):
    trainer = make_trainer(splits, tmp_path, "sequential", epochs=3)
    model = trainer.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.fit()
    after = model.state_dict()
    groups = parameters_per_exit(model)
    names = {id(p): n for n, p in model.named_parameters()}
    # Stage 3 (the last) trains exit 3's group only; exits 1 and 2 were frozen then, but
    # trained in their own stages, so they differ from the start. Run only stage 3 again:
    snapshot = {k: v.clone() for k, v in after.items()}
    trainer.stage_epochs = [0, 0, 1]
    trainer.checkpoint.unlink()
    trainer.fit()
    for group, should_change in zip(groups, [False, False, True]):
        for p in group:
            changed = not torch.equal(snapshot[names[id(p)]], model.state_dict()[names[id(p)]])
            assert changed == should_change, names[id(p)]
    # Frozen batch-norm statistics do not drift either.
    bn = "blocks.0.1.running_mean"
    assert torch.equal(snapshot[bn], model.state_dict()[bn])
    assert not torch.equal(before["blocks.2.0.weight"], after["blocks.2.0.weight"])


def test_resume_gives_the_same_model(splits, tmp_path):
    straight = make_trainer(splits, tmp_path / "a", "boostnet")
    straight.fit()
    interrupted = make_trainer(splits, tmp_path / "b", "boostnet")

    def kill_after_two(info):
        if info["epoch"] == 2:
            raise KeyboardInterrupt

    interrupted.on_epoch = kill_after_two
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = make_trainer(splits, tmp_path / "b", "boostnet")  # fresh process state
    state = resumed.fit()
    assert state.epoch == 3
    assert_same_model(straight.model, resumed.model)


def assert_same_model(a, b):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)


def test_a_checkpoint_the_model_saves_loads_with_weights_only(splits, tmp_path):
    """Everything the trainer saves (state dicts of the model, SGD with momentum and the
    scaler, the stage, the history with NaN cells) loads without unpickling code."""
    make_trainer(splits, tmp_path, "sequential").fit()
    ckpt = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["optimizer"]["state"]
    assert any(math.isnan(r["train_loss"]) for r in ckpt["history"])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_model"])
def test_a_broken_checkpoint_is_set_aside_and_the_run_starts_over(splits, tmp_path, caplog,
                                                                   damage):
    straight = make_trainer(splits, tmp_path / "a", "boostnet", epochs=2)
    straight.fit()
    broken = make_trainer(splits, tmp_path / "b", "boostnet", epochs=2)
    broken.checkpoint.parent.mkdir()
    (tmp_path / "b" / "history.csv").write_text("kept\n")  # the rest of the folder
    if damage == "truncate":
        broken.checkpoint.write_bytes((tmp_path / "a" / "checkpoint.pt").read_bytes()[:1000])
    elif damage == "garbage":
        broken.checkpoint.write_text("not a torch file")
    else:  # a readable checkpoint of another backbone: must not be half loaded
        other = backbones.create("chain_tiny", num_classes=7, image_size=16)
        torch.save({"model": other.state_dict(), "optimizer": {}, "scaler": {}, "stage": 0,
                    "epoch": 1, "history": []}, broken.checkpoint)
    original = broken.checkpoint.read_bytes()
    state = broken.fit()
    assert state.epoch == 2 and len(state.history) == 6  # trained from epoch 0
    assert_same_model(straight.model, broken.model)
    (aside,) = (tmp_path / "b").glob("checkpoint.pt.corrupt-*")
    assert aside.read_bytes() == original and (tmp_path / "b" / "history.csv").exists()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "bench.pipeline"]
    assert line.startswith(f"{broken.checkpoint} is unreadable (")
    assert line.endswith(f"moved to {aside.name}; the run starts over")
    if damage == "other_model":
        assert "does not fit the model" in line


def test_nan_loss_stops_with_a_clear_error(splits, tmp_path):
    trainer = make_trainer(splits, tmp_path, "joint")
    with torch.no_grad():
        trainer.model.heads[0][2].weight.fill_(math.nan)
    with pytest.raises(NonFiniteLoss, match="training loss is nan at epoch 1, step 1"):
        trainer.fit()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="torch.compile on CPU needs a C compiler")
def test_compiled_training_matches_eager_closely(splits, tmp_path):
    eager = make_trainer(splits, tmp_path / "eager", "boostnet", epochs=1)
    eager.fit()
    compiled = make_trainer(splits, tmp_path / "compiled", "boostnet", epochs=1, compile=True)
    compiled.fit()
    for (k, a), b in zip(eager.model.state_dict().items(),
                         compiled.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=k)


def test_the_training_record_has_stages_epochs_and_memory(splits, tmp_path):
    trainer = make_trainer(splits, tmp_path, "sequential", epochs=3)
    record = trainer.training_record(trainer.fit())
    assert [(s["stage"], s["name"], s["epochs"], s["trainable_exits"])
            for s in record["stages"]] == [(1, "exit 1", 1, [1]), (2, "exit 2", 1, [2]),
                                           (3, "exit 3", 1, [3])]
    assert record["stages"][0]["passes_per_step"]["forward"] == 1.0
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]
    assert all(e["train_seconds"] > 0 and e["eval_seconds"] > 0 and e["steps"] == 3
               for e in record["epochs"])
    assert all(e["peak_memory_mib"] is not None for e in record["epochs"])  # Linux
    assert record["memory_measure"].startswith("cpu") and record["post_training"] is None
    # a resumed run keeps the costs of the epochs trained before it
    resumed = make_trainer(splits, tmp_path, "sequential", epochs=3)
    assert len(resumed.training_record(resumed.fit())["epochs"]) == 3


def test_drop_last_false_trains_the_last_partial_batch_too(splits, tmp_path):
    """96 training images in batches of 40: 2 steps by default (the last 16 dropped), 3 with
    training.drop_last false, as the reference's DataLoader does."""
    def steps(**training):
        folder = tmp_path / "-".join(f"{k}={v}" for k, v in training.items())
        trainer = make_trainer(splits, folder, "joint", epochs=1, **{"batch_size": 40, **training})
        return [e["steps"] for e in trainer.training_record(trainer.fit())["epochs"]]

    assert steps() == [2]
    assert steps(drop_last=True) == [2]
    assert steps(drop_last=False) == [3]
    # a split smaller than one batch is never dropped
    assert steps(batch_size=128) == [1]
