"""A backbone with a method installed, in eval mode, as the inference tests need it."""
import torch

import methods
from bench import backbones


def installed_model(name, method="boostnet", batch=8, **overrides):
    """``name`` with ``method`` installed, seeded, with non-trivial batch-norm running
    statistics (one train-mode forward of ``batch`` random images), in eval mode."""
    torch.manual_seed(0)
    model = backbones.create(name, **{"num_classes": 10, **overrides})
    meth = methods.create(method)
    meth.install(model)
    meth.configure(model, None)
    if method == "ztw":  # its ensembles (in combine) as after the post-training fit
        meth.exit_heads.ensembles_fitted.fill_(True)
    with torch.no_grad():
        model(torch.randn(batch, *model.input_size))
    return model.eval(), meth
