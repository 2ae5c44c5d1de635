"""bench.speed: the command line, and steps that are the method's own training steps."""
import pytest
import torch

import methods
from bench import backbones, speed

torch.set_num_threads(1)


def test_main_prints_timing_summary(capsys):
    assert speed.main(["--backbone", "msdnet_tiny", "--method", "boostnet", "--batch-size", "4",
                       "--steps", "2", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("median", "min", "max", "threads 1", torch.__version__, "loadavg",
                 "1 forward, 1 backward, 1 optimizer steps"):
        assert word in out


def test_every_stage_is_timed_and_options_are_passed(capsys):
    assert speed.main(["--backbone", "chain_tiny", "--method", "sequential", "--batch-size",
                       "2", "--steps", "1", "--warmup", "0", "--threads", "1", "--option",
                       "freeze_previous=false"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"chain_tiny / sequential stage {n}/3 (exit {n})" for n in (1, 2, 3)]
    with pytest.raises(SystemExit):
        speed.main(["--method", "joint", "--option", "nope"])


def test_time_steps_trains_the_model():
    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    times = speed.time_steps(model, methods.create("boostnet"), steps=2, warmup=0,
                             batch_size=2, num_classes=3)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert model.grad_rescale is True  # boostnet installs its gradient rescaling
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", methods.names())
def test_every_method_can_be_timed(name, capsys):
    assert speed.main(["--backbone", "chain_tiny", "--method", name, "--batch-size", "4",
                       "--steps", "1", "--warmup", "0", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    n_stages = len(methods.create(name).stages(3))
    assert len(lines) == n_stages and all("s/step" in line for line in lines)


def test_steps_timed_in_turn_against_a_reference(capsys):
    assert speed.main(["--backbone", "chain_tiny", "--method", "kd", "--against", "joint",
                       "--batch-size", "4", "--steps", "3", "--warmup", "1",
                       "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "joint median" in out and "ratio median" in out
    calls = []
    times, ref = speed.time_alternating(lambda: calls.append("m"), lambda: calls.append("r"),
                                        steps=2, warmup=1)
    assert calls == ["r", "m"] * 3 and len(times) == len(ref) == 2
