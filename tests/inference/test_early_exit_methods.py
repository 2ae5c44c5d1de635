"""Real early exits through methods with modules at the exits (IMTA's and ZTW's heads read
the previous exit's output): samples that leave leave the heads' kept tensors too."""
import pytest
import torch

import methods
from bench import backbones, evaluate
from bench.inference.early_exit import early_exit, simulate


@pytest.mark.parametrize("name", ["imta", "ztw", "l2w", "boostnet"])
def test_decisions_equal_simulation_with_method_modules(name):
    torch.manual_seed(0)
    model = backbones.create("msdnet_tiny", num_classes=10)
    method = methods.create(name)
    method.install(model)
    method.configure(model, None)
    model.eval()
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
    conf = evaluate.confidences(method.combine(full))[0]
    thresholds = [float(c.median()) + 1e-9 for c in conf]  # about half leave at each exit
    classes, exits, _ = simulate(full, method.combine, thresholds)
    assert len(set(exits.tolist())) == 3
    for batch_size in (None, 5):
        real = early_exit(model, method.combine, thresholds, x, batch_size=batch_size)
        assert torch.equal(real[0], classes) and torch.equal(real[1], exits)
