"""Training-step speed of a backbone under a method, on random data (``bench speed``).

One step is what the trainer does per loaded batch, set up by the trainer's own code
(bench.pipeline.step_setup): the method's ``train_step`` in the stage being timed (for most
methods: forward over the stage's exits, the method's loss, backward, SGD step; L2W's meta
step and its two half-batch updates; IMTA's second stage with only its new heads training),
with SGD of the suite's ``training.optimizer`` values, under the precision
(bench.engine.precision) and, with ``compile``, compiled as the trainer compiles
(bench.engine.compiling: CUDA graphs on a GPU). Each of the method's stages is timed in turn
(or only ``stage``). The heads predict the classes of ``dataset`` (cifar100 unless said).

Other steps can be timed in the same process, alternating round by round with ours (the
order reversed every other round) so that load drifts hit them alike: ``plain`` (our model
with every tensor NCHW), ``against`` (another method's first stage) and ``reference`` (the
BoostNet reference implementation from a checkout of SHI-Labs/Boosted-Dynamic-Networks the
user provides, imported from there at run time by :mod:`.reference`; it runs eagerly,
under the same autocast).

``epoch`` times what an epoch costs instead of a fixed batch: each round is
``epoch_steps`` consecutive steps on batches drawn, augmented (random crop and flip) and
normalised on the device from uint8 images held there, as the trainer's data does, with one
synchronisation at the end of the round.

Modules: :mod:`.measure` (the settings, :func:`measure`, what it returns), :mod:`.steps`
(our step and its batches), :mod:`.rounds` (timing in turn, ratios, estimates),
:mod:`.profiling` (torch.profiler), :mod:`.reference` (the reference's step).
"""
from bench.pipeline.speed.measure import Measurement, Settings, StageTiming, measure

__all__ = ["Measurement", "Settings", "StageTiming", "measure"]
