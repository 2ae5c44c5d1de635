"""Pure building blocks of the early-exit training methods beyond BoostNet.

Each module holds the math of one published technique, on plain tensors and small modules,
with no knowledge of the trainer, the registry or a backbone:

- :mod:`methods.lib.distill`: distillation from the last exit (``kd``) and its general form;
- :mod:`methods.lib.isc`: IMTA's inline subnetwork collaboration and one-for-all distillation;
- :mod:`methods.lib.cascade`: Zero Time Waste's cascade connections between exit heads;
- :mod:`methods.lib.ensemble`: Zero Time Waste's geometric ensembles, fitted on stored logits;
- :mod:`methods.lib.l2w`: L2W-DEN's weight prediction network and its meta step.

The formulas, defaults, citations and costs are in ``docs/building-blocks.md``.
"""
