"""The trainer under the training regimes (methods.regimes): phase 1 trains the backbone and
its final head alone, phase 2 the method's stages on a frozen backbone (disjoint) or on
everything (mixed); checkpoints resume across the phase boundary."""
import pytest
import torch

import methods
from bench import backbones, data
from bench.config import TrainingConfig
from bench.pipeline.train import Trainer

TRAINING = {"epochs": 4, "batch_size": 32, "eval_batch_size": 128, "device": "cpu",
            "optimizer": {"lr": 0.05}, "backbone_epochs": 2}


@pytest.fixture(scope="module")
def splits():
    return data.load("synthetic", "unused", heldout=64, seed=0, train_subset=96,
                     test_subset=64, options={"train_size": 200, "test_size": 64,
                                              "image_size": 16})


def make_trainer(splits, folder, method="joint", regime="disjoint", **options):
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=10, image_size=16)
    cfg = TrainingConfig.model_validate({**TRAINING, "regime": regime})
    return Trainer(model, methods.create(method, **options), splits, cfg, seed=0,
                   device=torch.device("cpu"), checkpoint=folder / "checkpoint.pt")


def snapshots(trainer) -> list[dict]:
    """The model's state dict after every epoch, collected while it trains."""
    taken = []
    trainer.on_epoch = lambda info: taken.append(
        {k: v.clone() for k, v in trainer.model.state_dict().items()})
    return taken


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


# chain_tiny: blocks.n feed heads.n and block n+1; the last exit depends on every block and
# on heads.2 (its final head). Buffers included: batch-norm statistics of the blocks.
BACKBONE = lambda k: k.startswith(("blocks.", "heads.2."))
EARLY_HEADS = lambda k: k.startswith(("heads.0.", "heads.1."))


def test_disjoint_freezes_the_backbone_bit_for_bit_and_trains_the_other_heads(splits,
                                                                               tmp_path):
    trainer = make_trainer(splits, tmp_path, "ztw", ensemble_epochs=2)
    states = snapshots(trainer)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    phase_one, phase_two = changed(start, states[1]), changed(states[1], states[3])
    # phase 1: the backbone and the final head train; the earlier heads and the method's
    # cascade neither train nor drift (they idle, in eval mode)
    assert any(k.startswith("blocks.") for k in phase_one) and "heads.2.2.weight" in phase_one
    assert not any(EARLY_HEADS(k) or k.startswith("method_modules") for k in phase_one)
    # phase 2: nothing the last exit depends on changes, not even batch-norm statistics
    assert not any(BACKBONE(k) for k in phase_two), sorted(phase_two)
    assert {"heads.0.2.weight", "heads.1.2.weight", "method_modules.links.0.linear.weight",
            "method_modules.links.1.linear.weight"} <= phase_two


def test_mixed_trains_the_backbone_and_the_heads_in_phase_two(splits, tmp_path):
    trainer = make_trainer(splits, tmp_path, regime="mixed")
    states = snapshots(trainer)
    trainer.fit()
    phase_two = changed(states[1], states[3])
    assert "blocks.0.0.weight" in phase_two and "blocks.2.1.running_mean" in phase_two
    assert {"heads.0.2.weight", "heads.2.2.weight"} <= phase_two


def test_phase_one_is_the_same_for_every_method(splits, tmp_path):
    """Plain cross-entropy of the last exit, without the method's loss, modules or gradient
    rescaling: BoostNet (rescaling on) and ZTW (a cascade into the last exit) leave phase 1
    as joint training does, bit for bit."""
    ends = []
    for i, (name, options) in enumerate((("joint", {}), ("boostnet", {}),
                                         ("ztw", {"ensemble_epochs": 2}))):
        trainer = make_trainer(splits, tmp_path / str(i), name, regime="mixed", **options)
        states = snapshots(trainer)
        trainer.stage_epochs = [2, 0]  # phase 1 alone
        trainer.fit()
        ends.append({k: v for k, v in states[1].items() if not k.startswith("method_")})
    for other in ends[1:]:
        assert changed(ends[0], other) == set()


def test_a_run_killed_in_phase_two_resumes_in_phase_two(splits, tmp_path):
    straight = make_trainer(splits, tmp_path / "a", "boostnet", grad_rescale=False)
    straight.fit()
    interrupted = make_trainer(splits, tmp_path / "b", "boostnet", grad_rescale=False)
    seen = []

    def kill_after_three(info):
        seen.append(info["phase"])
        if info["epoch"] == 3:
            raise KeyboardInterrupt

    interrupted.on_epoch = kill_after_three
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert seen == [1, 1, 2]
    resumed = make_trainer(splits, tmp_path / "b", "boostnet", grad_rescale=False)
    phases = []
    resumed.on_epoch = lambda info: phases.append((info["epoch"], info["phase"]))
    state = resumed.fit()
    assert phases == [(4, 2)]  # phase 1 is not trained again
    assert state.epoch == 4 and [r["stage"] for r in state.history[::3]] == [1, 1, 2, 2]
    for (k, x), y in zip(straight.model.state_dict().items(),
                         resumed.model.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)


def test_the_training_record_names_the_phases(splits, tmp_path):
    trainer = make_trainer(splits, tmp_path, "joint", regime="disjoint")
    state = trainer.fit()
    record = trainer.training_record(state)
    assert record["regime"] == "disjoint"
    first, second = record["stages"]
    assert (first["phase"], first["epochs"], first["scope"]) == (1, 2, "last_exit")
    assert first["active_exits"] == [3] and first["name"].startswith("phase 1")
    assert (second["phase"], second["epochs"], second["scope"]) == (2, 2, "other_exits")
    # phase 1's loss is the last exit's alone: the other exits' loss cells are empty
    with_loss = [r["exit"] for r in state.history
                 if r["stage"] == 1 and r["train_loss"] == r["train_loss"]]
    assert with_loss == [3, 3]


def test_a_pretrained_backbone_skips_phase_one(splits, tmp_path):
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=10, image_size=16)
    cfg = TrainingConfig.model_validate({**TRAINING, "regime": "disjoint",
                                         "backbone_epochs": 0})
    trainer = Trainer(model, methods.create("joint"), splits, cfg, seed=0,
                      device=torch.device("cpu"), checkpoint=tmp_path / "checkpoint.pt")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    state = trainer.fit()
    assert [p.phase for p in trainer.plan] == [2] and state.epoch == 4
    assert not any(BACKBONE(k) for k in changed(start, model.state_dict()))
