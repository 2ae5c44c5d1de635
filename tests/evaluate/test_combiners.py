import pytest
import torch

from bench import evaluate as ev
from bench.evaluate import combiners


def probs(z):
    return torch.softmax(z.double(), dim=-1)


def test_registry_names_create_and_errors():
    assert combiners.names() == ["caching", "none", "product"]
    with pytest.raises(KeyError, match="unknown combiner 'mean'.*caching, none, product"):
        combiners.create("mean")
    with pytest.raises(ValueError, match=r"'product' got options \['weight'\]; valid options: "
                                         r"\['weights'\]"):
        combiners.create("product", weight=[1, 2])
    with pytest.raises(ValueError, match="'caching' got options.*valid options: none"):
        combiners.create("caching", weights=None)
    with pytest.raises(ValueError, match="'none' is already registered"):
        combiners.register("none")(lambda f: f)


def test_none_is_the_identity():
    f = torch.randn(3, 5, 4)
    assert combiners.create("none")(f) is f


def test_product_hand_computed_with_an_eliminated_class():
    # 2 exits, 1 sample, 3 classes. relu: exit 1 [2, 1, 0], exit 2 [1, 3, 2].
    f = torch.tensor([[[2.0, 1.0, -1.0]], [[1.0, 3.0, 2.0]]])
    p = probs(combiners.create("product")(f))
    # exit 1: [2, 1, 0] / 3; exit 2: [2*1, 1*3, 0*2] / 5 (class 2 stays eliminated)
    torch.testing.assert_close(p[0, 0], torch.tensor([2 / 3, 1 / 3, 0.0], dtype=torch.float64))
    torch.testing.assert_close(p[1, 0], torch.tensor([0.4, 0.6, 0.0], dtype=torch.float64))
    # weights [1, 2]: exit 2 is [2 * 1, 1 * 9, 0] / 11
    p = probs(combiners.create("product", weights=[1.0, 2.0])(f))
    torch.testing.assert_close(p[1, 0], torch.tensor([2 / 11, 9 / 11, 0.0], dtype=torch.float64))
    # 'linear' is w_i = i / N = [0.5, 1]: exit 1 [2, 1, 0]^0.5, exit 2 [2^0.5 * 1, 1 * 3, 0]
    p = probs(combiners.create("product", weights="linear")(f))
    a, b = 2 ** 0.5, 1.0
    torch.testing.assert_close(p[0, 0], torch.tensor([a, b, 0.0], dtype=torch.float64) / (a + b))
    torch.testing.assert_close(p[1, 0], torch.tensor([a, 3.0, 0.0], dtype=torch.float64) / (a + 3))


def test_product_falls_back_to_softmax_when_every_class_is_eliminated():
    f = torch.tensor([
        [[-1.0, -2.0, 0.0], [1.0, 2.0, -1.0]],  # sample 0: all <= 0 at exit 1
        [[3.0, 1.0, 2.0], [-1.0, -1.0, 4.0]],   # sample 1: class 2 gone at exit 1, 0 and 1 now
    ])
    z = combiners.create("product")(f)
    assert not z.isnan().any() and z.dtype == torch.float64
    # sample 0: eliminated at exit 1 and so for good: softmax(F_1), then softmax(F_2)
    torch.testing.assert_close(probs(z[:, 0]), probs(f[:, 0]))
    # sample 1: exit 1 normal (relu [1, 2, 0] / 3), exit 2 all eliminated -> softmax(F_2)
    torch.testing.assert_close(probs(z[0, 1]), torch.tensor([1 / 3, 2 / 3, 0.0],
                                                            dtype=torch.float64))
    torch.testing.assert_close(probs(z[1, 1]), probs(f[1, 1]))


def test_product_weights_are_checked():
    f = torch.randn(3, 2, 4)
    for bad in ([1.0, 2.0], [1.0, 0.0, 1.0], [1.0, -1.0, 2.0], "square"):
        with pytest.raises(ValueError, match="3 positive numbers.*got"):
            combiners.create("product", weights=bad)(f)


def test_caching_keeps_the_latest_most_confident_exit():
    # one sample, max softmax per exit .6 .9 .9 .7 -> k(n) = 1, 2, 3 (tie: later), 3
    # (2 classes: the tied exits' confidences are bit-equal, a + 1 == 1 + a)
    rows = [[0.6, 0.4], [0.1, 0.9], [0.9, 0.1], [0.7, 0.3]]
    f = torch.tensor(rows, dtype=torch.float64).log()[:, None, :]
    z = combiners.create("caching")(f)
    assert torch.equal(z, f[[0, 1, 2, 2]])
    assert z.argmax(-1)[:, 0].tolist() == [0, 1, 0, 0]


def test_caching_confidence_is_the_running_max():
    f = torch.randn(6, 300, 10) * 3
    z = combiners.create("caching")(f)
    assert z.dtype == f.dtype
    conf = ev.max_softmax(f)
    assert torch.equal(ev.max_softmax(z), conf.cummax(dim=0).values)


@pytest.mark.parametrize("name", combiners.names())
def test_exit_n_only_depends_on_exits_up_to_n(name):
    f = torch.randn(4, 50, 6) * 2
    later = f.clone()
    later[2:] = torch.randn(2, 50, 6) * 5
    a, b = combiners.create(name)(f), combiners.create(name)(later)
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2:], b[2:])
    assert a.shape == f.shape and bool(a.max(dim=-1).values.isfinite().all())
