"""Multi-exit backbones: a registry plus MSDNet, RANet, early-exit ViTs (timm) and small
nets for tests.

>>> from bench import backbones
>>> model = backbones.create("msdnet10_cifar", num_classes=100)
>>> logits = model(x)          # list of num_exits tensors, raw head logits f_1..f_N
>>> state = model.begin(x)     # or exit by exit (bench.backbones.common.ExitState):
>>> f1, state = model.advance(state)
>>> f2, state = model.advance(state.select(keep))   # only the samples that go on

On CPU the MSDNets run channels_last (bench.backbones.layout).
"""
from bench.backbones.registry import create, names, register

# Importing a module registers its configurations.
from bench.backbones import msdnet, ranet, tiny, vit  # noqa: E402,F401

__all__ = ["create", "names", "register"]
