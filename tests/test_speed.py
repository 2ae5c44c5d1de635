"""bench.speed: one quick smoke run of the command line."""
import torch

from bench import speed

torch.set_num_threads(1)


def test_main_prints_timing_summary(capsys):
    assert speed.main(["--backbone", "msdnet_tiny", "--method", "boostnet", "--batch-size", "4",
                       "--steps", "2", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("median", "min", "max", "threads 1", torch.__version__, "loadavg"):
        assert word in out


def test_time_steps_trains_the_model():
    from bench import backbones

    torch.manual_seed(0)
    model = backbones.create("chain_tiny", num_classes=3)
    before = [p.detach().clone() for p in model.parameters()]
    times = speed.time_steps(model, speed.method_loss("boostnet", model), batch_size=2,
                             steps=2, warmup=0, num_classes=3)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert model.grad_rescale is True  # boostnet installs its gradient rescaling
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
