"""Early-exit ViTs on timm: timm's network and weights, the exits, attention counted in
the MACs, gradient rescaling, weights from a file, bad overrides; every method trains on
one, and real early exits agree with the simulation."""
import pytest
import torch
import torch.nn.functional as F

try:  # timm imports torchvision, which some torch builds lack (tox's torch213)
    import timm
    from timm.models.vision_transformer import VisionTransformer
except Exception as e:
    pytest.skip(f"timm is not usable here: {type(e).__name__}: {e}", allow_module_level=True)

import methods  # noqa: E402
from bench import backbones, flops  # noqa: E402
from bench.backbones import vit as vit_module  # noqa: E402
from bench.backbones.common import parameters_per_exit  # noqa: E402
from bench.backbones.vit import VIT_CIFAR  # noqa: E402
from bench.inference.early_exit import early_exit, simulate  # noqa: E402
from bench.config import OptimizerConfig  # noqa: E402
from bench.pipeline.speed.steps import method_step, random_batch  # noqa: E402

torch.set_num_threads(1)

VITS = {"deit_tiny_ee": "deit_tiny_patch16_224", "deit_small_ee": "deit_small_patch16_224",
        "vit_base_ee": "vit_base_patch16_224"}


def _cifar_vit(num_classes=10):
    """timm's VisionTransformer of vit_cifar_ee's architecture."""
    return VisionTransformer(img_size=32, patch_size=4, num_classes=num_classes, **VIT_CIFAR)


def _saved(model, tmp_path, name="weights.pth"):
    path = tmp_path / name
    torch.save(model.state_dict(), path)
    return path


# ---- the registered configurations are timm's networks --------------------------------

@pytest.mark.parametrize("name", sorted(VITS))
def test_imagenet_configs_have_timms_blocks_plus_one_head_per_exit(name):
    model = backbones.create(name, num_classes=100)
    reference = timm.create_model(VITS[name], num_classes=100)
    d = reference.embed_dim
    assert (model.num_exits, model.input_size, model.grad_rescale) == (12, (3, 224, 224), False)
    assert model.exit_blocks == tuple(range(12))
    # 11 new exits (LayerNorm 2d + Linear d*100 + 100) on top of timm's own parameters
    own = sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in model.parameters()) == own + 11 * (2 * d + d * 100 + 100)


def test_vit_cifar_ee_is_small():
    model = backbones.create("vit_cifar_ee")
    assert (model.num_exits, model.input_size, model.img_size) == (4, (3, 32, 32), (32, 32))
    assert model.tokens.pos_embed.shape == (1, 65, 48)  # 8x8 patches of 4 px + class token
    assert sum(p.numel() for p in model.parameters()) < 150_000


def test_last_exit_is_timms_forward_with_the_same_weights(tmp_path):
    torch.manual_seed(1)
    reference = _cifar_vit().eval()
    model = backbones.create("vit_cifar_ee", pretrained_file=str(_saved(reference, tmp_path)))
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], reference(x), rtol=1e-5, atol=1e-6)
        # exit n: LayerNorm + Linear on the class token after block exit_blocks[n]
        tokens = model.embed(x)
        for n, block in enumerate(model.blocks):
            tokens = block(tokens)
            if n < model.num_exits - 1:
                head = model.exits[n]
                want = F.linear(F.layer_norm(tokens[:, 0], (48,), head.norm.weight,
                                             head.norm.bias, eps=1e-6), head.fc.weight,
                                head.fc.bias)
                torch.testing.assert_close(model(x, num_exits=n + 1)[n], want)


def test_pretrained_file_of_an_imagenet_vit_loads_into_deit_tiny_ee(tmp_path):
    torch.manual_seed(2)
    reference = timm.create_model("deit_tiny_patch16_224").eval()
    path = _saved(reference, tmp_path)
    model = backbones.create("deit_tiny_ee", pretrained_file=str(path), exit_blocks=[5, 11])
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[-1], reference(x), rtol=1e-4, atol=1e-5)
    # 100 classes: the backbone loads, the classifier is new
    model = backbones.create("deit_tiny_ee", num_classes=100, pretrained_file=str(path))
    assert torch.equal(model.blocks[3].mlp.fc1.weight, reference.blocks[3].mlp.fc1.weight)
    assert model.exits[-1].fc.weight.shape == (100, 192)


def test_pretrained_file_is_resampled_to_another_grid(tmp_path):
    torch.manual_seed(3)
    path = _saved(_cifar_vit(), tmp_path)
    model = backbones.create("vit_cifar_ee", img_size=64, pretrained_file=str(path))
    assert model.tokens.pos_embed.shape == (1, 16 * 16 + 1, 48)  # timm's checkpoint_filter_fn
    assert model(torch.randn(1, 3, 64, 64))[-1].shape == (1, 10)


def test_bad_pretrained_files_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"vit_cifar_ee: pretrained_file '.*nowhere.pth' does "
                                         "not exist"):
        backbones.create("vit_cifar_ee", pretrained_file=str(tmp_path / "nowhere.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="junk.pth' cannot be read as a state dict"):
        backbones.create("vit_cifar_ee", pretrained_file=str(junk))
    other = _saved(backbones.create("chain_tiny"), tmp_path, "chain.pth")
    with pytest.raises(ValueError, match=r"chain.pth' does not fit this ViT \(missing \(\d+\): "
                                         r".*blocks.0.attn.*unexpected \(\d+\): .*blocks.0.0"):
        backbones.create("vit_cifar_ee", pretrained_file=str(other))
    wider = _saved(VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4,
                                     num_heads=4, num_classes=10), tmp_path, "wider.pth")
    with pytest.raises(ValueError, match=r"wrong shapes \(\d+\): \['blocks.0.attn"):
        backbones.create("vit_cifar_ee", pretrained_file=str(wider))


def test_pretrained_without_a_network_is_one_line_naming_pretrained_file(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no download, whatever the network
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # and an empty cache
    with pytest.raises(ValueError) as err:
        backbones.create("deit_small_ee", num_classes=100, pretrained=True)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("deit_small_ee: pretrained: true needs timm's weights of "
                              "deit_small_patch16_224")
    assert "pass pretrained_file: FILE.pth" in message


def test_an_unreachable_hub_is_seen_at_once(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # RFC 2606: never resolves
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert vit_module.hub_unreachable(timeout=2.0)


@pytest.mark.parametrize("overrides, expected", [
    (dict(pretrained=True), "vit_cifar_ee has no published weights.*pretrained_file"),
    (dict(pretrained=True, pretrained_file="w.pth"), "pretrained: true .* or pretrained_file"),
    (dict(pretrained="yes"), "pretrained must be true or false"),
    (dict(patch_size=5), "img_size 32 is not a multiple of patch_size 5"),
    (dict(drop_path_rate=1.0), r"drop_path_rate must be a number in \[0, 1\)"),
    (dict(input_size=0), "input_size must be an integer >= 1"),
])
def test_bad_overrides_are_named(overrides, expected):
    with pytest.raises(ValueError, match=expected):
        backbones.create("vit_cifar_ee", **overrides)


def test_unknown_override_lists_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['depth'\].*exit_blocks"):
        backbones.create("vit_cifar_ee", depth=6)


# ---- exits ------------------------------------------------------------------------------

@pytest.mark.parametrize("exit_blocks, expected", [
    ([0, 4], r"exit_blocks index 4 is outside the blocks 0\.\.3"),
    ([-1, 3], r"exit_blocks index -1 is outside"),
    ([1, 1, 3], r"exit_blocks lists block\(s\) \[1\] more than once"),
    ([], "exit_blocks is empty"),
    ([2, 1, 3], "exit_blocks must be increasing"),
    ([0, 2], "exit_blocks must end with the last block 3"),
    ([0.5, 3], "exit_blocks index 0.5"),
    ("0,3", "exit_blocks must be a list"),
])
def test_bad_exit_blocks_are_named(exit_blocks, expected):
    with pytest.raises(ValueError, match=f"vit_cifar_ee: {expected}"):
        backbones.create("vit_cifar_ee", exit_blocks=exit_blocks)


def test_exits_after_chosen_blocks_run_nothing_later():
    model = backbones.create("vit_cifar_ee", exit_blocks=[1, 3]).eval()
    ran = []
    for b, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda m, a, b=b: ran.append(f"block{b}"))
    for n, head in enumerate(model.exits):
        head.register_forward_pre_hook(lambda m, a, n=n: ran.append(f"exit{n}"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        ran.clear()
        first = model(x, num_exits=1)
    assert model.num_exits == 2 and ran == ["block0", "block1", "exit0"]
    assert torch.equal(first[0], full[0])
    # exit 2 is the group of blocks 2-3 and the last head
    groups = parameters_per_exit(model)
    later = {id(p) for m in (model.blocks[2], model.blocks[3], model.exits[1])
             for p in m.parameters()}
    assert {id(p) for p in groups[1]} == later
    assert {id(model.tokens.cls_token), id(model.tokens.pos_embed)} <= {id(p) for p in groups[0]}


def test_input_size_resizes_to_img_size_inside_the_model():
    model = backbones.create("vit_cifar_ee", img_size=64, patch_size=8, input_size=32).eval()
    same = backbones.create("vit_cifar_ee", img_size=64, patch_size=8).eval()  # no resize
    same.load_state_dict(model.state_dict())
    assert model.input_size == (3, 32, 32) and model.img_size == (64, 64)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        up = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x)[0], same(up)[0])
    with pytest.raises(ValueError, match=r"takes 32x32 images, got \[2, 3, 64, 64\]"):
        model(up)
    # the resize is counted: 4 MACs per output element (fvcore's bilinear convention)
    assert flops.per_exit(model)[0] == flops.per_exit(same)[0] + 4 * 3 * 64 * 64


# ---- MACs: attention counted ------------------------------------------------------------

def _block_macs(tokens, d, mlp_ratio=4, qk_norm=False):
    """qkv, proj and the MLP (4 + 2 mlp_ratio) N d^2, attention 2 N^2 d (q k^T and the
    product with v), the block's two layer norms 5 N d each (fvcore's convention) and with
    qk_norm two more, on the queries and the keys of every head (N d elements each)."""
    norms = 4 if qk_norm else 2
    return (4 + 2 * mlp_ratio) * tokens * d * d + 2 * tokens * tokens * d + norms * 5 * tokens * d


def test_vit_cifar_ee_macs_by_hand():
    tokens, d, classes = 65, 48, 10
    patch = 3 * 4 * 4 * d * 64  # the 4x4/4 patch convolution over 64 positions
    head = 5 * d + d * classes  # LayerNorm on the class token + Linear
    block = _block_macs(tokens, d, qk_norm=True)
    expected = [patch + n * (block + head) for n in range(1, 5)]
    model = backbones.create("vit_cifar_ee")
    assert flops.per_exit(model) == expected
    assert flops.per_exit(model, counter="torch") == expected


def test_deit_tiny_ee_macs_match_the_closed_form():
    """Per exit: patch embedding + per block 12 N d^2 + 2 N^2 d (N = 197 tokens, class token
    included; d = 192), within 2% (the closed form leaves out layer norms and heads)."""
    n_tokens, d = 197, 192
    patch = 3 * 16 * 16 * d * 196
    closed = [patch + n * (12 * n_tokens * d * d + 2 * n_tokens ** 2 * d) for n in range(1, 13)]
    counted = flops.per_exit(backbones.create("deit_tiny_ee"))
    assert all(0 < c / e - 1 < 0.02 for c, e in zip(counted, closed)), (counted, closed)


def test_fused_attention_counts_as_the_unfused_matmuls():
    """fvcore's handle for the fused kernel gives what fvcore counts for timm's unfused path
    (two matmuls) and torch's FlopCounterMode for the same path (two bmm), per exit."""
    from torch.utils.flop_counter import FlopCounterMode
    model = backbones.create("vit_cifar_ee")
    fused = flops.fvcore_by_operator(model)
    for attention in (m for m in model.modules() if hasattr(m, "fused_attn")):
        attention.fused_attn = False
    unfused = flops.fvcore_by_operator(model)
    for k in range(model.num_exits):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, 32, 32), num_exits=k + 1)
        bmm = counter.get_flop_counts()["Global"][torch.ops.aten.bmm] // 2
        assert fused[k]["scaled_dot_product_attention"] == unfused[k]["matmul"] == bmm
        assert bmm == (k + 1) * 2 * 65 * 65 * 48
    assert flops.per_exit(model) == flops.per_exit(model, counter="torch")


# ---- gradient rescaling -----------------------------------------------------------------

def test_grad_rescale_gives_each_parameter_the_mean_over_the_losses_that_depend_on_it():
    model = backbones.create("vit_cifar_ee", num_classes=5, exit_blocks=[0, 2, 3]).double()
    model.train()
    n = model.num_exits
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    weights = [torch.randn(2, 5, dtype=torch.float64) for _ in range(n)]
    params = list(model.parameters())

    def losses():
        return [(w * f).sum() for w, f in zip(weights, model(x))]

    per_loss = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                for loss in losses()]
    model.grad_rescale = True
    got = torch.autograd.grad(sum(losses()), params)
    segment = {id(p): s for s, group in enumerate(parameters_per_exit(model)) for p in group}
    heads = {id(p): s for s, head in enumerate(model.exits) for p in head.parameters()}
    for j, p in enumerate(params):
        deps = [i for i in range(n) if per_loss[i][j] is not None]
        s = segment[id(p)]
        assert deps == ([s] if id(p) in heads else list(range(s, n)))
        expected = sum(per_loss[i][j] for i in deps) / len(deps)
        torch.testing.assert_close(got[j], expected, rtol=1e-9, atol=1e-12)


# ---- methods and real early exits on a ViT ------------------------------------------------

@pytest.mark.parametrize("name", methods.names())
def test_every_method_trains_every_stage_on_a_vit(name):
    torch.manual_seed(0)
    method = methods.create(name)
    model = backbones.create("vit_cifar_ee", num_classes=4, exit_blocks=[1, 3])
    for stage in range(len(method.stages(model.num_exits))):
        before = [p.detach().clone() for p in model.parameters()]
        step = method_step(model, method, OptimizerConfig(), stage_index=stage)
        step(*random_batch(4, model.input_size, 4, seed=stage))
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_real_early_exits_agree_with_the_simulation():
    torch.manual_seed(0)
    model = backbones.create("vit_cifar_ee", num_classes=10).eval()
    x = torch.randn(24, 3, 32, 32)
    combine = methods.create("boostnet").combine
    with torch.no_grad():
        full = model(x)
    preds = combine(full)
    thresholds = []  # per exit, half-way between the two middle confidences: about half
    for p in preds[:-1]:  # the samples leave, none within rounding of its threshold
        s = p.softmax(dim=1).max(dim=1).values.unique()  # sorted
        thresholds.append(float(s[len(s) // 2 - 1:len(s) // 2 + 1].mean()))
    classes, exits, confidence = simulate(full, combine, thresholds)
    assert len(set(exits.tolist())) >= 2
    for batch_size in (None, 5, 1):
        real = early_exit(model, combine, thresholds, x, batch_size=batch_size)
        assert torch.equal(real[0], classes) and torch.equal(real[1], exits)
        torch.testing.assert_close(real[2], confidence, rtol=1e-5, atol=1e-6)
