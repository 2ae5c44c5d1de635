"""Early-exit vision transformers built from timm's VisionTransformer (its blocks, its
weights), with an exit after chosen blocks.

Shapes (B images, P = (img_size / patch_size)^2 patches, N = P + 1 tokens, d the width):

    image [B, 3, s, s] --(bilinear resize to img_size, only if s != img_size)-->
    patch_embed [B, P, d] --(class token prepended, position embedding added)--> [B, N, d]
    --> blocks[0] --> ... --> blocks[depth - 1]
                  exit n after block exit_blocks[n]: f_n = Linear(LayerNorm(x[:, 0]))  [B, C]

Exit n reads the class token of the residual stream after block ``exit_blocks[n]``
(0-based). The last exit sits on the last block and is timm's own head: its final
``norm`` and ``head`` with their (pretrained) weights; the earlier exits are a new
LayerNorm + Linear each (timm's initialisation: truncated normal 0.02, zero bias). Every
exit normalizes only the class token (LayerNorm acts per token, so timm's norm over all
tokens followed by taking token 0 gives the same logits, at N times the cost). The
exits' final linears are what methods find and take over (methods.heads).

Gradient rescaling (``grad_rescale``, BoostNet's paper Eq. 7) on the residual stream, the
placement MSDNet's gradient equilibrium uses on its blocks: at exit i (0-based, N exits)
the stream's gradient from head i is scaled by 1/(N-i) and the gradient from the later
blocks by (N-i-1)/(N-i), so the gradient reaching every block between exits i-1 and i is
the mean over the N-i losses that depend on it.

Weights: ``pretrained: true`` asks timm for its published weights (a download from the
Hugging Face Hub on the first use, timm's cache after; without a network only the cache,
and a one-line error naming ``pretrained_file`` when the weights are not in it).
``pretrained_file`` loads a state dict from disk (a timm model's ``state_dict()`` saved
with torch.save, or a ``.safetensors`` file from the Hub) through timm's own
``checkpoint_filter_fn``, which resamples the position embedding and the patch embedding
to this model's grid. When ``num_classes`` differs from the weights' the classifier is
left out and trains from scratch. Only the backbone and the last exit get weights; the
earlier exits always start from timm's initialisation.

timm is imported when a ViT is built, not when the registry is imported (it costs two
seconds of start-up that the CNN backbones do not need). docs/vit.md compares these exits
with Zero Time Waste's, LGViT's and the other peers'.
"""
from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.backbones.common import ExitState, check_advance, check_num_exits, rescale_grad
from bench.backbones.registry import register

MAX_DEFAULT_EXITS = 12  # exit_blocks' default: one exit after every block up to this depth


class TimmUnavailable(ImportError):
    """timm (or the torchvision it imports) cannot be imported here: no ViT can be built."""


def _timm():
    """The timm package, its VisionTransformer module imported (on first use; see the
    module docstring)."""
    try:
        import timm
        import timm.models.vision_transformer  # noqa: F401
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise TimmUnavailable(f"the early-exit ViTs need timm and the torchvision it imports "
                              f"(pip install 'timm>=1.0'); importing them failed: "
                              f"{type(e).__name__}: {e}") from e
    return timm


def _vision_transformer():
    """timm.models.vision_transformer: VisionTransformer, its initialisation and its
    checkpoint filter."""
    return _timm().models.vision_transformer


class Tokens(nn.Module):
    """The class token and the position embedding: [B, P, d] patches -> [B, P+1, d] tokens,
    the class token first (timm's ``_pos_embed`` for a ViT with one class token and a
    position embedding that covers it). One module without children, so that the per-exit
    parameter groups (bench.backbones.common.parameters_per_exit) see both parameters."""

    def __init__(self, cls_token: nn.Parameter, pos_embed: nn.Parameter):
        super().__init__()
        self.cls_token = cls_token  # [1, 1, d]
        self.pos_embed = pos_embed  # [1, P + 1, d]

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed


class ExitHead(nn.Module):
    """LayerNorm + Linear on the class token: [B, N, d] -> [B, C]."""

    def __init__(self, norm: nn.Module, fc: nn.Linear):
        super().__init__()
        self.norm, self.fc = norm, fc

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(tokens[:, 0]))


def _new_exit(width: int, num_classes: int, eps: float) -> ExitHead:
    head = ExitHead(nn.LayerNorm(width, eps=eps), nn.Linear(width, num_classes))
    _vision_transformer().init_weights_vit_timm(head.fc)  # truncated normal 0.02, zero bias
    return head


def _check_supported(vit: nn.Module, name: str) -> None:
    """The timm features this early-exit ViT reproduces; anything else is refused."""
    unsupported = {
        "no class token": getattr(vit, "cls_token", None) is None,
        "register tokens": getattr(vit, "reg_token", None) is not None,
        "a distillation token": hasattr(vit, "dist_token"),
        "no position embedding": getattr(vit, "pos_embed", None) is None,
        "a position embedding without the class token (no_embed_class)":
            getattr(vit, "no_embed_class", False),
        "dynamic image size": getattr(vit, "dynamic_img_size", False),
        "a pooling other than the class token": getattr(vit, "global_pool", "token") != "token",
        "a norm after pooling (fc_norm)": not isinstance(getattr(vit, "fc_norm", nn.Identity()),
                                                         nn.Identity),
        "a linear head": not isinstance(getattr(vit, "head", None), nn.Linear),
    }
    found = [what for what, present in unsupported.items() if present]
    if found:
        raise ValueError(f"{name}: an early-exit ViT needs timm's plain class-token "
                         f"VisionTransformer; this one has {', '.join(found)}")


class EarlyExitViT(nn.Module):
    """timm's VisionTransformer ``vit`` with an exit after each block of ``exit_blocks``
    (0-based, increasing, the last one the last block). ``input_size``: the side of the
    images the model takes (resized bilinearly to the ViT's ``img_size`` inside the
    forward, counted in its MACs); the ViT's own size by default."""

    def __init__(self, vit: nn.Module, exit_blocks: Sequence[int], input_size: int | None = None,
                 name: str = "vit"):
        super().__init__()
        _check_supported(vit, name)
        img_size = tuple(vit.patch_embed.img_size)
        self.exit_blocks = tuple(exit_blocks)
        self.num_exits = len(self.exit_blocks)
        side = input_size or img_size[0]
        self.input_size = (vit.patch_embed.proj.in_channels, side, side)
        self.img_size = img_size
        self.grad_rescale = False
        self.patch_embed = vit.patch_embed
        self.tokens = Tokens(vit.cls_token, vit.pos_embed)
        self.pos_drop, self.patch_drop, self.norm_pre = vit.pos_drop, vit.patch_drop, vit.norm_pre
        self.blocks = vit.blocks
        width, eps = vit.embed_dim, getattr(vit.norm, "eps", 1e-6)
        self.exits = nn.ModuleList([_new_exit(width, vit.num_classes, eps)
                                    for _ in self.exit_blocks[:-1]]
                                   + [ExitHead(vit.norm, vit.head)])

    def forward(self, x: torch.Tensor, num_exits: int | None = None) -> list[torch.Tensor]:
        k = check_num_exits(num_exits, self.num_exits)
        logits = []
        for i in range(k):
            f, x = self._exit(i, x, more=i + 1 < k)
            logits.append(f)
        return logits

    def begin(self, x: torch.Tensor) -> ExitState:
        """Exit-by-exit run (:class:`~bench.backbones.common.ExitState`): the image, then the
        token stream [B, N, d] after each exit's block."""
        return ExitState(0, x)

    def advance(self, state: ExitState) -> tuple[torch.Tensor, ExitState]:
        """The blocks up to exit k and its head for the samples in ``state``."""
        i = check_advance(self, state)
        f, x = self._exit(i, state.tensors, more=i + 1 < self.num_exits)
        return f, ExitState(i + 1, x)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, s, s] images (s = input_size) -> [B, N, d] tokens before the first block."""
        if tuple(images.shape[-2:]) != self.input_size[1:]:
            raise ValueError(f"{type(self).__name__} takes {self.input_size[1]}x"
                             f"{self.input_size[2]} images, got {list(images.shape)}")
        if self.input_size[1:] != self.img_size:
            images = F.interpolate(images, size=self.img_size, mode="bilinear",
                                   align_corners=False)
        x = self.tokens(self.patch_embed(images))
        return self.norm_pre(self.patch_drop(self.pos_drop(x)))

    def _exit(self, i: int, x: torch.Tensor, more: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Exit i (0-based) from what exit i-1 left (the image for exit 0): the blocks after
        exit i-1's up to exit_blocks[i], then head i. Returns (logits, tokens)."""
        first = 0 if i == 0 else self.exit_blocks[i - 1] + 1
        if i == 0:
            x = self.embed(x)
        for b in range(first, self.exit_blocks[i] + 1):
            x = self.blocks[b](x)
        if not self.grad_rescale:
            return self.exits[i](x), x
        n = self.num_exits  # 1/(N-i) of head i's gradient, (N-i-1)/(N-i) of the later blocks'
        logits = self.exits[i](rescale_grad(x, 1.0 / (n - i)))
        return logits, (rescale_grad(x, (n - i - 1) / (n - i)) if more else x)


# ---- overrides and weights -------------------------------------------------------------

def _int(name: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def resolve_exit_blocks(name: str, exit_blocks: Sequence[int] | None, depth: int) -> list[int]:
    """The checked exit_blocks (0-based block indices, increasing, ending at the last block);
    None: one exit after every block (depth <= MAX_DEFAULT_EXITS)."""
    if exit_blocks is None:
        if depth > MAX_DEFAULT_EXITS:
            raise ValueError(f"{name}: depth {depth} has no default exit_blocks; give them")
        return list(range(depth))
    if isinstance(exit_blocks, (str, bytes)) or not isinstance(exit_blocks, Sequence):
        raise ValueError(f"{name}: exit_blocks must be a list of block indices in 0..{depth - 1}, "
                         f"got {exit_blocks!r}")
    if not exit_blocks:
        raise ValueError(f"{name}: exit_blocks is empty; give the 0-based blocks that get an exit, "
                         f"ending with the last block {depth - 1} (e.g. [{depth // 2 - 1}, "
                         f"{depth - 1}])")
    for b in exit_blocks:
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < depth:
            raise ValueError(f"{name}: exit_blocks index {b!r} is outside the blocks "
                             f"0..{depth - 1} (0-based; depth {depth})")
    duplicates = sorted({b for b in exit_blocks if list(exit_blocks).count(b) > 1})
    if duplicates:
        raise ValueError(f"{name}: exit_blocks lists block(s) {duplicates} more than once: "
                         f"{list(exit_blocks)}")
    if list(exit_blocks) != sorted(exit_blocks):
        raise ValueError(f"{name}: exit_blocks must be increasing, got {list(exit_blocks)}")
    if exit_blocks[-1] != depth - 1:
        raise ValueError(f"{name}: exit_blocks must end with the last block {depth - 1} (the "
                         f"final exit is timm's head), got {list(exit_blocks)}")
    return list(exit_blocks)


def _read_state(name: str, path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{name}: pretrained_file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torch.load or safetensors error: the file is no state dict
        raise ValueError(f"{name}: pretrained_file {str(path)!r} cannot be read as a state dict "
                         f"({type(e).__name__}: {e})") from e


def load_pretrained_file(vit: nn.Module, path: str | Path, name: str) -> None:
    """Load a timm-format state dict into ``vit`` (see the module docstring); a classifier
    of another width is left out. Raises ValueError naming the keys that do not fit."""
    state = _read_state(name, Path(path))
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{name}: pretrained_file {str(path)!r} holds no state dict")
    state = _vision_transformer().checkpoint_filter_fn(state, vit)
    own = vit.state_dict()
    head = [k for k in ("head.weight", "head.bias")
            if k in state and k in own and state[k].shape != own[k].shape]
    for k in head:  # another number of classes: a new classifier
        del state[k]
    wrong = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    missing = sorted(set(own) - set(state) - set(head))
    unexpected = sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        detail = "; ".join(f"{what} ({len(keys)}): {keys[:8]}" for what, keys in (
            ("wrong shapes", wrong), ("missing", missing), ("unexpected", unexpected)) if keys)
        raise ValueError(f"{name}: pretrained_file {str(path)!r} does not fit this ViT ({detail})")
    vit.load_state_dict(state, strict=False)


def hub_unreachable(timeout: float = 3.0) -> bool:
    """True when no proxy is configured and the Hugging Face Hub's host (HF_ENDPOINT) takes
    no TCP connection within ``timeout`` seconds: then only the local cache can serve
    weights (huggingface_hub would otherwise retry for about a minute before failing)."""
    from huggingface_hub import constants
    if urllib.request.getproxies():
        return False
    url = urllib.parse.urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return False
    except OSError:
        return True


@contextmanager
def _hub_cache_only():
    """huggingface_hub's offline mode (the local cache alone) for one call."""
    from huggingface_hub import constants
    saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _download_pretrained(name: str, timm_name: str, kwargs: dict) -> nn.Module:
    create_model = _timm().create_model
    try:
        with _hub_cache_only() if hub_unreachable() else nullcontext():
            return create_model(timm_name, pretrained=True, **kwargs)
    except OSError as e:  # no network, the Hub unreachable, offline mode, a missing cache entry
        raise ValueError(
            f"{name}: pretrained: true needs timm's weights of {timm_name} from the Hugging Face "
            f"Hub, which could not be fetched ({type(e).__name__}); on a machine with a network "
            f"save them with torch.save(timm.create_model('{timm_name}', pretrained=True)"
            f".state_dict(), 'FILE.pth') and pass pretrained_file: FILE.pth instead") from e


OVERRIDES = {  # what a suite's ``overrides`` may set, with the defaults shared by all
    "exit_blocks": None,  # 0-based blocks with an exit; None: every block
    "img_size": None,  # the ViT's input side (each configuration's own by default)
    "patch_size": None,
    "input_size": None,  # the side of the images given to the model; None: img_size
    "pretrained": False,  # timm's published weights (a download)
    "pretrained_file": None,  # a timm-format state dict on disk
    "drop_path_rate": 0.0,  # stochastic depth, timm's linear rule over the blocks
}


def _check(name: str, timm_name: str | None, o: dict) -> None:
    _int(name, "num_classes", o["num_classes"])
    _int(name, "img_size", o["img_size"])
    _int(name, "patch_size", o["patch_size"])
    if o["img_size"] % o["patch_size"]:
        raise ValueError(f"{name}: img_size {o['img_size']} is not a multiple of patch_size "
                         f"{o['patch_size']}")
    if o["input_size"] is not None:
        _int(name, "input_size", o["input_size"])
    rate = o["drop_path_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"{name}: drop_path_rate must be a number in [0, 1), got {rate!r}")
    if not isinstance(o["pretrained"], bool):
        raise ValueError(f"{name}: pretrained must be true or false, got {o['pretrained']!r}")
    if o["pretrained"] and o["pretrained_file"] is not None:
        raise ValueError(f"{name}: give pretrained: true (timm's download) or pretrained_file, "
                         "not both")
    if o["pretrained"] and timm_name is None:
        raise ValueError(f"{name} has no published weights (pretrained: true); pass "
                         "pretrained_file: a state dict of this architecture")
    if o["pretrained_file"] is not None and not isinstance(o["pretrained_file"], (str, Path)):
        raise ValueError(f"{name}: pretrained_file must be a path, got {o['pretrained_file']!r}")


def build_vit(name: str, timm_name: str | None, arch: dict, defaults: dict,
              overrides: dict) -> EarlyExitViT:
    """Build registered configuration ``name``: timm's ``timm_name`` (or a
    VisionTransformer with ``arch`` where timm has no such model) with ``defaults`` (its
    num_classes, img_size, patch_size) and the suite's ``overrides`` (:data:`OVERRIDES`)
    checked, weights loaded and exits attached."""
    allowed = ["num_classes", *OVERRIDES]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {unknown}; expected some of {allowed}")
    o = {**OVERRIDES, **defaults, **overrides}
    _check(name, timm_name, o)
    kwargs = dict(num_classes=o["num_classes"], img_size=o["img_size"],
                  patch_size=o["patch_size"], drop_path_rate=float(o["drop_path_rate"]))
    if o["pretrained"]:
        vit = _download_pretrained(name, timm_name, kwargs)
    elif timm_name is not None:
        vit = _timm().create_model(timm_name, pretrained=False, **kwargs)
    else:
        vit = _vision_transformer().VisionTransformer(**arch, **kwargs)
    exit_blocks = resolve_exit_blocks(name, o["exit_blocks"], len(vit.blocks))
    if o["pretrained_file"] is not None:
        load_pretrained_file(vit, o["pretrained_file"], name)
    model = EarlyExitViT(vit, exit_blocks, o["input_size"], name)
    # the resolved configuration, like MSDNet's ``config``
    model.config = dict(o, **arch, timm_model=timm_name, exit_blocks=exit_blocks,
                        input_size=model.input_size[-1],
                        pretrained_file=None if o["pretrained_file"] is None
                        else str(o["pretrained_file"]))
    return model


_IMAGENET = dict(num_classes=1000, img_size=224, patch_size=16)


@register("deit_tiny_ee")
def deit_tiny_ee(**overrides) -> EarlyExitViT:
    """timm's deit_tiny_patch16_224 (d 192, 12 blocks, 3 heads): 12 exits by default,
    1.26 GMACs to the last at 224x224 (1000 classes)."""
    return build_vit("deit_tiny_ee", "deit_tiny_patch16_224", {}, _IMAGENET, overrides)


@register("deit_small_ee")
def deit_small_ee(**overrides) -> EarlyExitViT:
    """timm's deit_small_patch16_224 (d 384, 12 blocks, 6 heads): 12 exits by default."""
    return build_vit("deit_small_ee", "deit_small_patch16_224", {}, _IMAGENET, overrides)


@register("vit_base_ee")
def vit_base_ee(**overrides) -> EarlyExitViT:
    """timm's vit_base_patch16_224 (d 768, 12 blocks, 12 heads): 12 exits by default."""
    return build_vit("vit_base_ee", "vit_base_patch16_224", {}, _IMAGENET, overrides)


# qk_norm (LayerNorm on each head's queries and keys, timm's option): trained from scratch
# with the suites' plain SGD (lr 0.1, no warm-up) the ViT without it stalled at chance or
# diverged for some seeds of the quickstart; with it every seed we tried trained.
VIT_CIFAR = dict(embed_dim=48, depth=4, num_heads=3, mlp_ratio=4.0, qk_norm=True)


@register("vit_cifar_ee")
def vit_cifar_ee(**overrides) -> EarlyExitViT:
    """A small ViT for 32x32 images, timm's VisionTransformer (patch 4: 64 patches + the
    class token; d 48, 4 blocks, 3 heads, qk_norm): 4 exits at 2.4 ... 9.2 MMACs, trains
    on a CPU in minutes (suites/quickstart-vit.yaml)."""
    return build_vit("vit_cifar_ee", None, VIT_CIFAR,
                     dict(num_classes=10, img_size=32, patch_size=4), overrides)
