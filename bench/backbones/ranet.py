"""RANet (Yang et al., CVPR 2020), layer for layer as BoostNet trained it.

Faithful to ``models/ranet.py`` of SHI-Labs/Boosted-Dynamic-Networks (the code behind the
BoostNet paper). That file is yangle15/RANet-pytorch's ``models/RANet.py`` with three changes:
the dataset argument is spelled ``dataset``/``imagenet`` instead of ``data``/``ImageNet``,
the linear-growth step mode is ``lin_grow`` instead of ``lg``, and ``forward(x, stage)`` returns
as soon as exit ``stage`` (0-based) is computed. The architectures are otherwise identical.
Parameter paths (``FirstLayer.layers.0...``, ``scale_flows.i.j...``, ``classifier.k...``)
are the reference's, so its checkpoints load with ``load_state_dict``.

Structure. ``FirstLayer`` is a chain of conv layers that makes one base feature per scale
flow (flow 0 has the lowest resolution). Scale flow ``ii`` has ``n_blocks + ii * block_step``
dense blocks. For ii >= 1 its first ``n_blocks + (ii - 1) * block_step`` are *fusion* blocks:
block ``j`` also reads every intermediate feature of block ``j`` of flow ``ii - 1`` (upsampled
by bilinear interpolation); the remaining blocks are plain dense blocks, each followed by
an exit. Exits are numbered in the reference's execution order: both exits of flow 0, then
flow 1, and so on (``n_blocks + (scales - 1) * block_step`` exits in all; 8 for both configs
here). ``forward(x, num_exits=k)`` stops right after exit k, like the reference's ``stage``.
At inference everything that runs before exit k feeds exit k (FirstLayer is a chain, every
block of a flow feeds that flow's next block), so nothing unneeded is computed.

Differences from the reference, all outside the two registered configurations:
- ``bottleneck``/``bnAfter``/``prune``/``base`` are not arguments: the reference RANet
  ignores ``args.bottleneck`` and ``args.bnAfter`` (its ConvBN is always built with the
  bottleneck, convolution before BatchNorm; the pre-activation branch is unreachable).
- The reference cannot build a fusion block with one layer (``step`` 1: a loop variable
  is read after an empty loop); here it is built with the obvious channel counts.
- ``num_classes`` sets the head width (the reference infers 10/100/1000 from the dataset).
As in the reference, ``_init_weights`` covers scale flows and classifiers but not
FirstLayer, which keeps PyTorch's default initialisation.

Gradient rescaling (``grad_rescale = True``; paper Eq. 7, dL/db_n = 1/(N-n+1)
sum_{i>=n} dL_i/db_n). The BoostNet reference does not rescale RANet's gradients; this is
our placement. Call *segment* s (0-based) everything computed after exit s and up to exit
s+1 in the execution order above. In RANet every tensor and parameter computed in
segment s, classifier s excepted, feeds exit s+1 and, through its own flow or through the
fusion blocks of the next flow, every later exit; so the losses depending on it are
exactly L_{s+1}..L_N, the same suffix as in a chain net. Classifier s feeds L_{s+1} only.
We put :func:`~bench.backbones.common.rescale_grad` on every edge that leaves a segment:
- into classifier s: scale 1/(N-s);
- a tensor made in segment s and read in a later segment t (the flow's feature carried
  past an exit, FirstLayer's base features read by flow ii, the intermediate features of
  flow ii-1 read by flow ii's fusion blocks): scale (N-t)/(N-s).
By induction from the last exit backwards, the gradient reaching any tensor or parameter
of segment s is then 1/(N-s) * sum_{i>s} dL_i (the mean over the losses that depend on
it), and classifier parameters get dL_{s+1} unscaled. This is exact, not approximate,
despite the skip connections: every path from a segment-s tensor to loss i carries the
same product of factors, (N-s)^-1 overall. For a chain (t = s+1 always) it reduces to
MSDNet/IMTA's gradient equilibrium (1/(N-s) into the head, (N-s-1)/(N-s) onwards).
``tests/backbones/test_ranet.py`` checks it parameter by parameter. N is always
``num_exits`` of the model, also when ``forward`` is asked for fewer exits. With
``grad_rescale = False`` no rescale op is inserted: forward and backward are plain RANet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones.common import ExitState, check_advance, check_num_exits, rescale_grad
from bench.backbones.registry import register


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------

class ConvBNReLU(nn.Module):
    """conv (no bias) -> BN -> ReLU, kept under ``.net`` like the reference's ConvBasic."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                 padding: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.net(x)


class Bottleneck(nn.Module):
    """1x1 conv to min(c_in, bn_width * c_out) channels -> BN -> ReLU -> 3x3 conv (stride 1
    or 2) -> BN -> ReLU. The reference's ConvBN with bnAfter=True (its only used branch)."""

    def __init__(self, c_in: int, c_out: int, bn_width: int, down: bool):
        super().__init__()
        inner = min(c_in, bn_width * c_out)
        self.net = nn.Sequential(
            nn.Conv2d(c_in, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, c_out, 3, stride=2 if down else 1, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.net(x)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class DenseLayer(nn.Module):
    """x -> cat(x, bottleneck(x)): adds ``growth`` channels (reference ConvNormal)."""

    def __init__(self, c_in: int, growth: int, bn_width: int):
        super().__init__()
        self.conv_normal = Bottleneck(c_in, growth, bn_width, down=False)

    def forward(self, x):
        return torch.cat([x, self.conv_normal(x)], dim=1)


class FusionLayer(nn.Module):
    """Dense layer that also reads a lower-resolution feature (reference ConvUpNormal).

    Output channels: c_in + growth, of which floor(growth * compress) come from ``low``.
    With ``down`` the new features have half the resolution and ``x`` is resized to match.
    """

    def __init__(self, c_in: int, c_low: int, growth: int, bn_width: int, bn_width_low: int,
                 compress: float, down: bool):
        super().__init__()
        from_low = math.floor(growth * compress)
        self.conv_up = Bottleneck(c_low, from_low, bn_width_low, down=False)
        self.conv_normal = Bottleneck(c_in, growth - from_low, bn_width, down=down)

    def forward(self, x, low):
        new = self.conv_normal(x)
        size = new.shape[-2:]
        return torch.cat([_resize(x, size), _resize(self.conv_up(low), size), new], dim=1)


class DenseBlock(nn.Module):
    """``steps`` dense layers, then an optional 1x1 transition (reference _BlockNormal).

    Returns (output, features): ``features`` = [input, after layer 1, ..., after layer
    ``steps``] (before the transition), which the next flow's fusion block reads.
    """

    def __init__(self, steps: int, c_in: int, growth: int, bn_width: int, reduction: float,
                 trans: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(c_in + i * growth, growth, bn_width) for i in range(steps))
        c_out = c_in + steps * growth
        self.features_channels = [c_in + i * growth for i in range(steps + 1)]
        self.trans = (ConvBNReLU(c_out, math.floor(reduction * c_out), 1, 1, 0)
                      if trans else None)
        self.out_channels = math.floor(reduction * c_out) if trans else c_out

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        if self.trans is not None:
            x = self.trans(x)
        return x, features


class FusionBlock(nn.Module):
    """Dense block fed by block j of the lower-resolution flow (reference _BlockUpNormal).

    Layer i reads ``low[i]``; the last layer halves the resolution when ``down``. The last
    low feature, through a 1x1 conv (``conv_last``) to floor(c * compress) channels and
    resized, is concatenated to the output before the optional transition.
    """

    def __init__(self, steps: int, c_in: int, c_low: list[int], growth: int, bn_width: int,
                 bn_width_low: int, reduction: float, trans: bool, down: bool,
                 compress: float):
        super().__init__()
        self.layers = nn.ModuleList(
            FusionLayer(c_in + i * growth, c_low[i], growth, bn_width, bn_width_low,
                        compress, down=down and i == steps - 1)
            for i in range(steps))
        c_out = c_in + steps * growth
        self.features_channels = [c_in + i * growth for i in range(steps + 1)]
        self.conv_last = ConvBNReLU(c_low[steps], math.floor(c_out * compress), 1, 1, 0)
        c_out += math.floor(c_out * compress)
        self.trans = (ConvBNReLU(c_out, math.floor(reduction * c_out), 1, 1, 0)
                      if trans else None)
        self.out_channels = math.floor(reduction * c_out) if trans else c_out

    def forward(self, x, low):
        features = [x]
        for layer, low_i in zip(self.layers, low):
            x = layer(x, low_i)
            features.append(x)
        x = torch.cat([x, _resize(self.conv_last(low[len(self.layers)]), x.shape[-2:])],
                      dim=1)
        if self.trans is not None:
            x = self.trans(x)
        return x, features


class BaseFeatures(nn.Module):
    """The reference's RAFirstLayer: a chain from the highest resolution down, one output
    per scale flow, returned lowest resolution first."""

    def __init__(self, channels: int, gr_factor: list[int], scale_list: list[int],
                 imagenet: bool):
        super().__init__()
        gr, scales = gr_factor[::-1], scale_list[::-1]  # highest resolution first
        c = channels * gr[0]
        if imagenet:  # 7x7/2 conv (with bias, as in the reference) + 3x3/2 max pool
            stem = nn.Sequential(nn.Conv2d(3, c, 7, 2, 3), nn.BatchNorm2d(c),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            stem = ConvBNReLU(3, c, 3, 1, 1)
        self.layers = nn.ModuleList([stem])
        for i in range(1, len(gr)):
            # halve the resolution where the scale changes
            stride = 1 if scales[i] == scales[i - 1] else 2
            self.layers.append(ConvBNReLU(c, channels * gr[i], 3, stride, 1))
            c = channels * gr[i]

    def forward(self, x):
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs[::-1]


class Classifier(nn.Module):
    """Two 3x3/2 conv-BN-ReLU, 2x2 average pool, linear (reference ClassifierModule)."""

    def __init__(self, c_in: int, c_mid: int, num_classes: int):
        super().__init__()
        self.m = nn.Sequential(ConvBNReLU(c_in, c_mid, 3, 2, 1),
                               ConvBNReLU(c_mid, c_mid, 3, 2, 1), nn.AvgPool2d(2))
        self.linear = nn.Linear(c_mid, num_classes)

    def forward(self, x):
        return self.linear(self.m(x).flatten(1))


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RANetConfig:
    """The reference's architecture arguments, snake_case (reference name in brackets)."""

    n_blocks: int = 2            # [nBlocks] blocks (= exits) of flow 0
    block_step: int = 2          # [block_step] extra blocks (= exits) per further flow
    step_mode: str = "even"      # [stepmode] 'even' or 'lin_grow'
    step: int = 4                # [step] layers per block (even), or increment (lin_grow)
    channels: int = 16           # [nChannels]
    growth_rate: int = 6         # [growthRate]
    gr_factor: tuple = (4, 2, 1, 1)   # [grFactor] per flow, lowest resolution first
    bn_factor: tuple = (4, 2, 1, 1)   # [bnFactor] bottleneck width per flow
    scale_list: tuple = (1, 2, 3, 3)  # [scale_list] resolution scale of each flow
    reduction: float = 0.5       # [reduction] transition compression
    compress_factor: float = 0.25  # [compress_factor] share of new channels from low res
    imagenet: bool = False       # ImageNet stem and heads (the reference's dataset switch)

    def check(self) -> "RANetConfig":
        def bad(name, expected, value):
            raise ValueError(f"RANet argument {name!r} must be {expected}, got {value!r}")

        for name in ("n_blocks", "block_step", "step", "channels", "growth_rate"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(name, "a positive integer", value)
        if self.step_mode not in ("even", "lin_grow"):
            bad("step_mode", "'even' or 'lin_grow'", self.step_mode)
        for name in ("gr_factor", "bn_factor", "scale_list"):
            value = getattr(self, name)
            if not value or not all(isinstance(v, int) and v >= 1 for v in value):
                bad(name, "a non-empty list of positive integers (or 'a-b-c')", value)
        if not len(self.gr_factor) == len(self.bn_factor) == len(self.scale_list):
            bad("scale_list", f"as long as gr_factor {list(self.gr_factor)} and bn_factor "
                f"{list(self.bn_factor)}", list(self.scale_list))
        if list(self.scale_list) != sorted(self.scale_list):
            bad("scale_list", "non-decreasing (flow 0 has the lowest resolution)",
                list(self.scale_list))
        if not 0 < self.reduction <= 1:
            bad("reduction", "in (0, 1]", self.reduction)
        if not 0 < self.compress_factor < 1:
            bad("compress_factor", "in (0, 1)", self.compress_factor)
        if math.floor(self.growth_rate * min(self.gr_factor) * self.compress_factor) < 1:
            bad("compress_factor", "large enough that growth_rate * gr_factor * "
                "compress_factor >= 1 in every flow", self.compress_factor)
        return self


def _as_ints(value):
    """'1-2-3' (the reference's command-line form), or a list/tuple, -> tuple of ints."""
    if isinstance(value, str):
        try:
            return tuple(int(v) for v in value.split("-"))
        except ValueError:
            return (value,)  # rejected with a clear message by RANetConfig.check
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _config(base: RANetConfig, overrides: dict) -> RANetConfig:
    allowed = [f.name for f in fields(RANetConfig) if f.name != "imagenet"]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(f"unknown RANet argument(s) {unknown}; expected some of {allowed}")
    for name in ("gr_factor", "bn_factor", "scale_list"):
        if name in overrides:
            overrides[name] = _as_ints(overrides[name])
    return replace(base, **overrides).check()


# ---------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------

class RANet(nn.Module):
    """Resolution-adaptive network; ``forward(x, num_exits)`` -> raw logits f_1..f_k."""

    def __init__(self, cfg: RANetConfig, num_classes: int, image_size: int):
        super().__init__()
        cfg.check()
        n_flows = len(cfg.scale_list)
        # blocks per flow, with a leading 0: [0, n, n + b, n + 2b, ...]
        blocks = [0] + [cfg.n_blocks + cfg.block_step * ii for ii in range(n_flows)]
        self.FirstLayer = BaseFeatures(cfg.channels, list(cfg.gr_factor),
                                       list(cfg.scale_list), cfg.imagenet)
        self.scale_flows = nn.ModuleList()
        self.classifier = nn.ModuleList()
        self.n_fusion = []  # fusion blocks at the start of each flow; the rest have exits

        # Layers per block, shared by all flows: block j of every flow has steps[j] layers
        # (which fusion needs). It grows by one entry per exit block built, as in the
        # reference, so a flow never reads an entry that is not there yet.
        steps = [cfg.step]
        prev_channels = None
        for ii in range(n_flows):
            flow = nn.ModuleList()
            c = cfg.channels * cfg.gr_factor[ii]
            growth = cfg.growth_rate * cfg.gr_factor[ii]
            # Fusion blocks with these (1-based) numbers halve the resolution. This is
            # the reference's nBlocks[:ii+1][-(scale-1):], Python's -0 quirk included
            # (scale 1 selects every entry).
            k = cfg.scale_list[ii] - 1
            down_at = blocks[:ii + 1][-k:] if k else blocks[:ii + 1]
            channels_of_flow = []
            for j in range(blocks[ii + 1]):
                n = j + 1
                # a 1x1 transition after block n when n = floor(m * blocks / scale), m < scale
                trans = any(n == math.floor((m + 1) * blocks[ii + 1] / cfg.scale_list[ii])
                            for m in range(cfg.scale_list[ii] - 1))
                if n > blocks[ii]:
                    block = DenseBlock(steps[j], c, growth, cfg.bn_factor[ii], cfg.reduction,
                                       trans)
                    steps.append(cfg.step if cfg.step_mode == "even" else steps[-1] + cfg.step)
                else:
                    block = FusionBlock(steps[j], c, prev_channels[j], growth,
                                        cfg.bn_factor[ii], cfg.bn_factor[ii - 1],
                                        cfg.reduction, trans, n in down_at,
                                        cfg.compress_factor)
                c = block.out_channels
                flow.append(block)
                channels_of_flow.append(block.features_channels)
                if n > blocks[ii]:
                    c_mid = c if cfg.imagenet else 128
                    self.classifier.append(Classifier(c, c_mid, num_classes))
            prev_channels = channels_of_flow
            self.scale_flows.append(flow)
            self.n_fusion.append(blocks[ii])

        for module in [*self.scale_flows.modules(), *self.classifier.modules()]:
            _init_weights(module)
        self.cfg = cfg
        self.num_exits = len(self.classifier)
        self.input_size = (3, image_size, image_size)
        self.grad_rescale = False

    def _carry(self, x: torch.Tensor, made_in: int, used_in: int) -> torch.Tensor:
        """A tensor of segment ``made_in`` read in segment ``used_in`` (see module doc)."""
        if not self.grad_rescale or used_in == made_in:
            return x
        n = self.num_exits
        return rescale_grad(x, (n - used_in) / (n - made_in))

    def forward(self, x: torch.Tensor, num_exits: int | None = None) -> list[torch.Tensor]:
        k = check_num_exits(num_exits, self.num_exits)
        state, logits = self.begin(x), []
        for _ in range(k):
            f, state = self.advance(state)
            logits.append(f)
        return logits

    def begin(self, x: torch.Tensor) -> ExitState:
        """Exit-by-exit run (:class:`~bench.backbones.common.ExitState`): the image."""
        return ExitState(0, {"x": x})

    def advance(self, state: ExitState) -> tuple[torch.Tensor, ExitState]:
        """Everything from exit k-1 up to exit k (execution order, module doc) for the
        samples in ``state``: (f_k, state after exit k).

        The state keeps the current flow's feature h, the base features of the later flows,
        the per-block features of the current flow (read by the next flow's fusion blocks)
        and those of the previous flow (read by this flow's fusion blocks); its position is
        (flow, next block, and the segment each kept tensor was made in)."""
        seg = check_advance(self, state)  # this call runs segment `seg` (0-based)
        t = state.tensors
        if "x" in t:  # segment 0 starts with FirstLayer: one base feature per flow
            base = self.FirstLayer(t["x"])
            t = {"h": base[0], "later": base[1:], "feats": [], "low": []}
            pos = (0, 0, 0, (), ())
        else:
            pos = state.position
        ii, j, h_made_in, feats_made_in, low_made_in = pos
        h, later, feats, low = t["h"], t["later"], t["feats"], t["low"]
        while True:
            if j == len(self.scale_flows[ii]):  # flow ii is done; flow ii+1 reads it
                low, low_made_in = feats, feats_made_in
                h, h_made_in, later = later[0], 0, later[1:]
                feats, feats_made_in = [], ()
                ii, j = ii + 1, 0
            block = self.scale_flows[ii][j]
            h = self._carry(h, h_made_in, seg)
            if j < self.n_fusion[ii]:
                h, f = block(h, [self._carry(t_, low_made_in[j], seg) for t_ in low[j]])
            else:
                h, f = block(h)
            h_made_in = seg
            feats, feats_made_in = feats + [f], feats_made_in + (seg,)
            j += 1
            if j > self.n_fusion[ii]:  # an exit block: its classifier is exit seg+1
                head_in = (rescale_grad(h, 1.0 / (self.num_exits - seg))
                           if self.grad_rescale else h)
                logits = self.classifier[seg](head_in)
                tensors = {"h": h, "later": later, "feats": feats, "low": low}
                return logits, ExitState(seg + 1, tensors,
                                         (ii, j, h_made_in, feats_made_in, low_made_in))


def _init_weights(m: nn.Module) -> None:
    """The reference's init: He-normal convs (fan-out), BN 1/0, zero linear bias."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------
# Registered configurations (values from SHI-Labs/Boosted-Dynamic-Networks ranet_scripts
# and args.py defaults: growthRate 6, reduction 0.5, compress-factor 0.25, block-step 2)
# ---------------------------------------------------------------------------------------

CIFAR_ANYTIME = RANetConfig(n_blocks=2, step_mode="even", step=4, channels=16,
                            growth_rate=6, gr_factor=(4, 2, 1, 1), bn_factor=(4, 2, 1, 1),
                            scale_list=(1, 2, 3, 3))
IMAGENET = RANetConfig(n_blocks=2, step_mode="even", step=8, channels=64, growth_rate=16,
                       gr_factor=(4, 2, 2, 1), bn_factor=(4, 2, 2, 1),
                       scale_list=(1, 2, 3, 4), imagenet=True)


@register("ranet8_cifar")
def ranet8_cifar(num_classes: int = 100, **overrides) -> RANet:
    """RANet, CIFAR-100 anytime setting of the paper (ranet_scripts/train_cifar100_any.sh)."""
    return RANet(_config(CIFAR_ANYTIME, overrides), num_classes, image_size=32)


@register("ranet_imagenet")
def ranet_imagenet(num_classes: int = 1000, **overrides) -> RANet:
    """RANet, ImageNet setting of the paper (ranet_scripts/train_imagenet_any.sh)."""
    return RANet(_config(IMAGENET, overrides), num_classes, image_size=224)
