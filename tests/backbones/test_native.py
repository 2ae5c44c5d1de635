"""The compiled batch norm (bench/backbones/batchnorm.c through native.py): its numbers
against PyTorch's NCHW kernel and float64, the fused ReLU, threads, and the build cache."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from bench.backbones import layout, native

torch.set_num_threads(1)

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CC") or "cc") is None,
    reason="no C compiler here: the compiled batch norm is unavailable (the PyTorch-op "
           "version is tested in test_layout.py)")


def _cl(t):
    return t.contiguous(memory_format=torch.channels_last)


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * 3 + 1
    grad = torch.randn(*shape, generator=g)
    weight = torch.rand(shape[1], generator=g) + 0.5
    bias = torch.randn(shape[1], generator=g)
    return x, grad, weight, bias


def _pytorch(x, grad, weight, bias, relu, dtype=torch.float32):
    """NCHW batch norm (+ ReLU) by PyTorch: output, dx, dw, db."""
    x, weight, bias = (t.detach().to(dtype).requires_grad_() for t in (x, weight, bias))
    y = nn.functional.batch_norm(x, None, None, weight, bias, True, 0.1, 1e-5)
    y = nn.functional.relu(y) if relu else y
    y.backward(grad.to(dtype))
    return [y.detach(), x.grad, weight.grad, bias.grad]


def _kernel(x, grad, weight, bias, relu):
    y, mean, invstd, _ = native.forward(_cl(x), weight, bias, 1e-5, relu)
    dx, dw, db = native.backward(_cl(grad), _cl(x), mean, invstd, weight, bias, relu)
    return [y, dx, dw, db]


def test_the_kernel_builds_and_loads_here():
    assert native.kernel() is not None


# (2, 200, 3, 5): C > 128, one row per pack; (3, 5, 7, 7): odd M; (64, 24, 16, 16): large
# enough for the threaded loops
@pytest.mark.parametrize("shape", [(8, 6, 32, 32), (5, 48, 8, 8), (3, 5, 7, 7),
                                   (2, 200, 3, 5), (64, 24, 16, 16)])
@pytest.mark.parametrize("relu", [False, True])
def test_kernel_as_accurate_as_pytorchs_nchw_kernel(shape, relu):
    x, grad, weight, bias = _inputs(shape)
    got = _kernel(x, grad, weight, bias, relu)
    nchw = _pytorch(x, grad, weight, bias, relu)
    exact = _pytorch(x, grad, weight, bias, relu, torch.float64)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert got[1].is_contiguous(memory_format=torch.channels_last)
    for ours, theirs, ref in zip(got, nchw, exact):
        scale = ref.abs().max()
        err_ours = ((ours.double() - ref).abs().max() / scale).item()
        err_nchw = ((theirs.double() - ref).abs().max() / scale).item()
        assert err_ours <= max(2 * err_nchw, 2e-7), (err_ours, err_nchw)


def test_a_tensor_the_kernel_cannot_read_is_refused():
    x, grad, weight, bias = _inputs((2, 4, 3, 3))
    for bad in (x, _cl(x).double()):  # NCHW; float64
        with pytest.raises(ValueError, match="channels_last float32"):
            native.forward(bad, weight, bias, 1e-5)


def test_fused_relu_masks_exactly_where_the_output_is_not_positive():
    x, grad, weight, bias = _inputs((4, 8, 6, 6), seed=3)
    y_plain, *_ = _kernel(x, grad, weight, bias, relu=False)
    y, dx, dw, db = _kernel(x, grad, weight, bias, relu=True)
    assert torch.equal(y, y_plain.clamp_min(0))
    masked_grad = torch.where(y_plain > 0, grad, torch.zeros(()))
    _, dx_masked, dw_masked, db_masked = _kernel(x, masked_grad, weight, bias, relu=False)
    assert torch.equal(dx, dx_masked) and torch.equal(dw, dw_masked)
    assert torch.equal(db, db_masked)


def test_relu_keeps_nan_so_a_diverging_run_is_seen():
    x, grad, weight, bias = _inputs((2, 4, 4, 4))
    x[0, 1, 2, 3] = float("nan")
    y, *_ = native.forward(_cl(x), weight, bias, 1e-5, True)
    assert torch.isnan(y[:, 1]).all()  # the NaN spoils channel 1's statistics
    assert not torch.isnan(y[:, 0]).any()


def test_result_does_not_depend_on_the_number_of_threads():
    x, grad, weight, bias = _inputs((64, 24, 16, 16))
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(_kernel(x, grad, weight, bias, relu=True))
    finally:
        torch.set_num_threads(before)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], run))


def test_strided_output_gradient_is_read_correctly():
    # the gradient of one piece of a channels_last torch.cat is a strided channel slice
    x, grad, weight, bias = _inputs((4, 6, 8, 8))
    wide = _cl(torch.randn(4, 10, 8, 8))
    wide[:, 2:8] = grad
    sliced = wide[:, 2:8]
    assert not sliced.is_contiguous(memory_format=torch.channels_last)
    y, mean, invstd, _ = native.forward(_cl(x), weight, bias, 1e-5, True)
    got = native.backward(sliced, _cl(x), mean, invstd, weight, bias, True)
    want = native.backward(_cl(grad), _cl(x), mean, invstd, weight, bias, True)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def _conv_bn_relu(sequential):
    torch.manual_seed(0)
    return sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), layout.BatchNorm2d(8),
                      nn.ReLU(inplace=True))


def test_sequential_fuses_the_relu_and_keeps_the_modules_and_their_hooks():
    fused = _conv_bn_relu(layout.Sequential)
    plain = _conv_bn_relu(nn.Sequential)
    assert list(fused.state_dict()) == list(plain.state_dict())
    calls = []
    fused[1].register_forward_hook(lambda *a: calls.append("bn"))
    relu_forward = fused[2].forward
    fused[2].forward = lambda t: calls.append("relu") or relu_forward(t)  # (not a hook)
    x = torch.randn(4, 3, 8, 8)
    grads = []
    for model in (fused, plain):
        inp = _cl(x).requires_grad_()
        y = model(inp)
        y.pow(2).sum().backward()
        grads.append([y.detach(), inp.grad, *(p.grad for p in model.parameters())])
    assert calls == ["bn"]  # the ReLU ran inside the batch norm's kernel
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused[1].running_var, plain[1].running_var)


def test_a_relu_with_hooks_is_called_not_fused():
    fused = _conv_bn_relu(layout.Sequential)
    plain = _conv_bn_relu(nn.Sequential)
    seen = []
    fused[2].register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].clone()))
    x = _cl(torch.randn(2, 3, 8, 8))
    y = fused(x)
    assert len(seen) == 1  # the hook saw the batch norm's output, before the ReLU
    assert (seen[0] < 0).any() and torch.equal(seen[0].clamp_min(0), y)
    torch.testing.assert_close(y, plain(x), rtol=1e-5, atol=1e-6)


def test_second_order_gradients_through_the_fused_relu():
    fused = _conv_bn_relu(layout.Sequential)
    plain = _conv_bn_relu(nn.Sequential)
    x = torch.randn(4, 3, 8, 8)

    def curvature(model, inp):
        g = torch.autograd.grad((model(inp) ** 3).sum(), inp, create_graph=True)[0]
        return torch.autograd.grad(g.pow(2).sum(), (inp, *model.parameters()))

    got = curvature(fused, _cl(x).requires_grad_())
    want = curvature(plain, x.clone().requires_grad_())
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _fresh_process(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)


def test_a_broken_cached_library_is_rebuilt(tmp_path):
    code = """
        from bench.backbones import native
        print(native.kernel()._name)
    """
    first = _fresh_process(code, XDG_CACHE_HOME=str(tmp_path))
    assert first.returncode == 0, first.stderr
    built = first.stdout.strip()
    assert built.startswith(str(tmp_path / "boostnet-bench"))
    with open(built, "wb") as f:
        f.write(b"not a shared library")
    second = _fresh_process(code, XDG_CACHE_HOME=str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == built
    assert open(built, "rb").read(4) == b"\x7fELF"


def test_without_a_compiler_the_pytorch_op_version_is_used_with_a_warning(tmp_path):
    out = _fresh_process("""
        import warnings, torch
        from bench.backbones import layout, native
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert native.kernel() is None
        print(caught[0].message)
        bn = layout.BatchNorm2d(3)
        x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
        y = bn(x, relu=True)
        want = torch.relu(torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias,
                                                         True))
        torch.testing.assert_close(y, want)
        print("fallback ok")
    """, CC=str(tmp_path / "no-such-cc"), XDG_CACHE_HOME=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "no C compiler" in out.stdout and "no-such-cc" in out.stdout
    assert "fallback ok" in out.stdout


def test_switched_off_by_environment_variable():
    out = _fresh_process("from bench.backbones import native; print(native.kernel())",
                         BENCH_NATIVE_BATCHNORM="0")
    assert out.returncode == 0 and out.stdout.strip() == "None"
