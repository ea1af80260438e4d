"""Tests of Winograd convolution F(m, r): exact transform matrices, the seven loops, numerical
gradients, chunking, float32 accuracy, the dispatch from conv2d, and PyTorch."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.gradcheck import numerical_gradient
from tinynet.kernels import _scratch as scratch_memory
from tinynet.kernels import conv2d as conv2d_module
from tinynet.kernels import conv2d_winograd as winograd
from tinynet.kernels.conv2d import conv2d_backward, conv2d_forward

from references import conv2d as reference_conv2d  # noqa: E402


# ------------------------------------------------------------------ the matrices
@pytest.mark.parametrize("m,r", [(m, r) for m in range(1, 7) for r in range(2, 6) if m + r - 1 <= 8])
def test_one_dimensional_minimal_filtering_is_exact_in_rational_arithmetic(m, r):
    """y = A^T [(G g) * (B^T d)] equals the correlation y_i = sum_k g_k d_(i+k), as a polynomial
    identity: checked with Fractions on random integer data, so no rounding can hide an error."""
    a_t, g, b_t = winograd._exact_matrices(m, r)
    alpha = m + r - 1
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(3):
        d = [Fraction(int(v)) for v in rng.integers(-9, 10, alpha)]
        k = [Fraction(int(v)) for v in rng.integers(-9, 10, r)]
        gk = [sum(g[a][i] * k[i] for i in range(r)) for a in range(alpha)]
        bd = [sum(b_t[a][i] * d[i] for i in range(alpha)) for a in range(alpha)]
        y = [sum(a_t[i][a] * gk[a] * bd[a] for a in range(alpha)) for i in range(m)]
        assert y == [sum(k[j] * d[i + j] for j in range(r)) for i in range(m)]
    # B^T's rows are coprime integers (the scale factors were moved into G)
    for row in b_t:
        assert all(value.denominator == 1 for value in row)
        assert np.gcd.reduce([abs(int(value)) for value in row]) == 1


def test_f23_matrices_are_lavin_and_grays():
    a_t, g, b_t = winograd.transform_matrices(2, 3)
    np.testing.assert_array_equal(b_t, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])
    np.testing.assert_array_equal(g, [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    np.testing.assert_array_equal(a_t, [[1, 1, 1, 0], [0, 1, -1, 1]])


def test_tile_choice():
    # AlexNet: F(3, 5) for conv2 (27 = 9 x 3: no wasted tiles), F(3, 3) for 13 x 13
    assert winograd.choose_tile(5, 27, 27) == 3
    assert winograd.choose_tile(3, 13, 13) == 3
    assert winograd.choose_tile(3, 56, 56) == 4       # VGG / ResNet sizes: the largest tile
    for r in (2, 3, 4, 5):
        for size in (1, 2, 7, 13, 100):
            m = winograd.choose_tile(r, size, size)
            assert m + r - 1 <= 7


# ------------------------------------------------------------------ against the definition
@st.composite
def winograd_configs(draw):
    groups = draw(st.integers(1, 2))
    r = draw(st.integers(2, 5))
    pad = (draw(st.integers(0, r - 1)), draw(st.integers(0, r - 1)))
    height = draw(st.integers(max(1, r - 2 * pad[0]), 9))
    width = draw(st.integers(max(1, r - 2 * pad[1]), 9))
    return dict(batch=draw(st.integers(1, 3)), channels=groups * draw(st.integers(1, 3)),
                out_channels=groups * draw(st.integers(1, 3)), height=height, width=width, r=r,
                padding=pad, groups=groups,
                # explicit tiles as large as choose_tile allows (alpha <= 7), and its own choice
                tile=draw(st.sampled_from([None] + [m for m in (1, 2, 3, 4) if m + r - 1 <= 7])),
                with_bias=draw(st.booleans()))


def make(config, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((config["batch"], config["channels"], config["height"], config["width"]))
    weight = rng.standard_normal((config["out_channels"], config["channels"] // config["groups"],
                                  config["r"], config["r"]))
    bias = rng.standard_normal(config["out_channels"]) if config["with_bias"] else None
    return x.astype(dtype), weight.astype(dtype), None if bias is None else bias.astype(dtype)


@settings(max_examples=40, deadline=None)
@given(config=winograd_configs(), seed=st.integers(0, 2**16))
def test_forward_matches_the_seven_loops(config, seed):
    x, weight, bias = make(config, seed)
    y = winograd.winograd_conv2d_forward(x, weight, bias, config["padding"], config["groups"], config["tile"])
    expected = reference_conv2d(x, weight, bias, (1, 1), config["padding"], (1, 1), config["groups"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(config=winograd_configs(), seed=st.integers(0, 2**16))
def test_backward_matches_numerical_gradients(config, seed):
    x, weight, bias = make(config, seed)
    padding, groups, tile = config["padding"], config["groups"], config["tile"]

    def forward():
        return winograd.winograd_conv2d_forward(x, weight, bias, padding, groups, tile)
    grad_output = np.random.default_rng(seed + 1).standard_normal(forward().shape)
    grad_input, grad_weight = winograd.winograd_conv2d_backward(grad_output, x, weight, padding, groups, tile)
    # central differences carry ~1e-7 of rounding here (outputs of size ~10, eps 1e-6, and the
    # transforms' own float64 rounding), so the bound is absolute 1e-6 on gradients of size ~1-10
    np.testing.assert_allclose(grad_input, numerical_gradient(forward, x, grad_output), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_weight, numerical_gradient(forward, weight, grad_output),
                               rtol=1e-6, atol=1e-6)
    only_weight = winograd.winograd_conv2d_backward(grad_output, x, weight, padding, groups, tile,
                                                    need_input_grad=False)
    assert only_weight[0] is None
    np.testing.assert_allclose(only_weight[1], grad_weight, rtol=1e-12, atol=1e-12)


def test_chunks_of_images_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 4, 8, 7))
    weight = rng.standard_normal((6, 2, 3, 3))
    grad_output = rng.standard_normal((5, 6, 8, 7))
    y_one = winograd.winograd_conv2d_forward(x, weight, None, (1, 1), 2)
    grads_one = winograd.winograd_conv2d_backward(grad_output, x, weight, (1, 1), 2)
    monkeypatch.setattr(scratch_memory, "CHUNK_BYTES", 1)            # one image per chunk
    np.testing.assert_allclose(winograd.winograd_conv2d_forward(x, weight, None, (1, 1), 2), y_one,
                               rtol=1e-12, atol=1e-12)
    for ours, expected in zip(winograd.winograd_conv2d_backward(grad_output, x, weight, (1, 1), 2), grads_one):
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels,size,out_channels,r,pad", [
    (48, 27, 64, 5, 2),      # AlexNet conv2's shape with fewer channels
    (64, 13, 96, 3, 1),      # conv3-5
])
def test_float32_accuracy_against_float64(channels, size, out_channels, r, pad):
    """The transforms cost accuracy in float32 (see the module docstring's Accuracy): bound it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, channels, size, size))
    weight = rng.standard_normal((out_channels, channels, r, r)) / np.sqrt(channels * r * r)
    grad_output = rng.standard_normal((4, out_channels, size, size))
    exact = [winograd.winograd_conv2d_forward(x, weight, None, (pad, pad))]
    exact += winograd.winograd_conv2d_backward(grad_output, x, weight, (pad, pad))
    single = [winograd.winograd_conv2d_forward(x.astype(np.float32), weight.astype(np.float32), None, (pad, pad))]
    single += winograd.winograd_conv2d_backward(grad_output.astype(np.float32), x.astype(np.float32),
                                                weight.astype(np.float32), (pad, pad))
    for ours, reference in zip(single, exact):
        assert ours.dtype == np.float32
        assert np.abs(ours - reference).max() / np.abs(reference).max() < 1e-4


# ------------------------------------------------------------------ dispatch from conv2d
def test_conv2d_dispatch_and_set_algorithm():
    def chosen(x_shape, weight_shape, stride=(1, 1), padding=(1, 1), dilation=(1, 1), dtype=np.float32):
        return conv2d_module.choose_algorithm(np.empty(x_shape, dtype), weight_shape, stride, padding, dilation, 1)

    x_shape, weight_shape = (6, 32, 13, 13), (48, 32, 3, 3)        # 6 images x 25 tiles of 3 x 3
    assert chosen(x_shape, weight_shape) == "winograd"
    assert chosen((1, 32, 13, 13), weight_shape) == "im2col"                  # too few pixels
    # the threshold counts output pixels (MIN_PIXELS = 700), whatever the tile size
    assert chosen((4, 32, 13, 13), weight_shape) == "im2col"                  # 676 pixels, 100 tiles
    assert chosen((5, 32, 13, 13), weight_shape) == "winograd"                # 845 pixels, 125 tiles
    assert chosen((1, 32, 28, 28), weight_shape) == "winograd"                # 784 pixels, 49 tiles of 4 x 4
    assert chosen((1, 32, 27, 27), (48, 32, 5, 5), padding=(2, 2)) == "winograd"   # AlexNet's conv2, batch 1
    assert chosen(x_shape, weight_shape, dtype=np.float16) == "im2col"
    assert chosen(x_shape, weight_shape, stride=(2, 2)) == "im2col"
    assert chosen(x_shape, weight_shape, dilation=(2, 2)) == "im2col"
    assert chosen(x_shape, (48, 32, 11, 11)) == "im2col"
    assert chosen((6, 3, 13, 13), (48, 3, 3, 3)) == "im2col"                  # too few channels
    assert chosen(x_shape, (48, 32, 1, 1), padding=(0, 0)) == "pointwise"
    assert chosen(x_shape, (48, 32, 1, 1), stride=(2, 2), padding=(0, 0)) == "pointwise"
    assert chosen(x_shape, (48, 32, 1, 1), padding=(1, 1)) == "im2col"         # padded 1x1: im2col
    previous = conv2d_module.set_algorithm("im2col")
    try:
        assert previous == "auto"
        assert chosen(x_shape, weight_shape) == "im2col"
        assert chosen(x_shape, (48, 32, 1, 1), padding=(0, 0)) == "im2col"
        with pytest.raises(ValueError, match="algorithm must be one of"):
            conv2d_module.set_algorithm("fft")
    finally:
        conv2d_module.set_algorithm(previous)
    # "winograd": every size; the layer's shape still decides
    with conv2d_module.use_algorithm("winograd"):
        assert conv2d_module.get_algorithm() == "winograd"
        assert chosen((1, 32, 13, 13), weight_shape) == "winograd"
        assert chosen((1, 32, 2, 2), weight_shape) == "winograd"
        assert chosen((1, 3, 99, 99), (16, 3, 11, 11), stride=(4, 4), padding=(0, 0)) == "space_to_depth"
        assert chosen(x_shape, weight_shape, stride=(2, 2)) == "im2col"
        assert chosen((6, 3, 13, 13), (48, 3, 3, 3)) == "im2col"
        assert chosen(x_shape, weight_shape, dtype=np.float16) == "im2col"
        assert chosen(x_shape, (48, 32, 1, 1), padding=(0, 0)) == "pointwise"
    assert conv2d_module.get_algorithm() == "auto"
    assert chosen((1, 3, 99, 99), (16, 3, 11, 11), stride=(4, 4), padding=(0, 0)) == "im2col"


def test_winograd_at_any_size_matches_im2col():
    rng = np.random.default_rng(8)
    for x_shape, weight_shape, padding in [((1, 16, 3, 3), (16, 16, 3, 3), 1), ((2, 16, 5, 4), (20, 16, 5, 5), 2),
                                           ((1, 16, 2, 2), (16, 16, 2, 2), 0)]:
        x = rng.standard_normal(x_shape)
        weight = rng.standard_normal(weight_shape)
        with conv2d_module.use_algorithm("winograd"):
            y, saved = conv2d_module.forward(x, weight, None, padding=padding)
        assert saved.algorithm == "winograd"
        with conv2d_module.use_algorithm("im2col"):
            expected, _ = conv2d_module.forward(x, weight, None, padding=padding)
        np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)


def test_a_bad_algorithm_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setattr(conv2d_module._choice, "name", "winograd-please")      # as if read from the env
    x = np.ones((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"TINYNET_CONV_ALGORITHM must be one of \('auto', 'im2col', 'winograd'\), "
                                         r"got 'winograd-please'"):
        conv2d_forward(x, np.ones((2, 2, 3, 3), np.float32))


def test_backward_follows_the_algorithm_forward_chose():
    """Switching the algorithm between forward and backward must not change the gradients:
    the choice travels in ``saved`` (a backward that re-read the switch would mix Winograd's
    forward with im2col's backward, or the reverse)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 32, 13, 13)).astype(np.float32)
    weight = rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
    grad = rng.standard_normal((6, 16, 13, 13)).astype(np.float32)
    y, saved = conv2d_module.forward(x, weight, None, padding=1)
    assert saved.algorithm == "winograd"
    expected = conv2d_module.backward(grad, saved)
    with conv2d_module.use_algorithm("im2col"):
        switched = conv2d_module.backward(grad, saved)
    for a, b in zip(expected[:2], switched[:2]):
        np.testing.assert_array_equal(a, b)


def test_the_algorithm_switch_is_per_thread_and_scoped():
    import threading
    seen = {}
    with conv2d_module.use_algorithm("im2col"):
        thread = threading.Thread(target=lambda: seen.update(other=conv2d_module._choice.name))
        thread.start()
        thread.join()
        seen["inside"] = conv2d_module._choice.name
    assert seen == {"other": "auto", "inside": "im2col"} and conv2d_module._choice.name == "auto"


def test_conv2d_gives_the_same_gradients_with_either_algorithm():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((12, 32, 13, 12))
    weight = rng.standard_normal((32, 16, 3, 3))
    bias = rng.standard_normal(32)
    grad_output = rng.standard_normal((12, 32, 13, 12))
    assert conv2d_module.choose_algorithm(x, weight.shape, (1, 1), (1, 1), (1, 1), 2) == "winograd"
    results = {}
    for algorithm in ("im2col", "auto"):
        previous = conv2d_module.set_algorithm(algorithm)
        try:
            y, saved = conv2d_forward(x, weight, bias, stride=1, padding=1, groups=2)
            results[algorithm] = (y,) + conv2d_backward(grad_output, saved)
        finally:
            conv2d_module.set_algorithm(previous)
    for ours, expected in zip(results["auto"], results["im2col"]):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)


def test_alexnet_shapes_match_torch_in_float32():
    """conv3's shape (3x3, padding 1, 13 x 13) and conv2's (5x5, padding 2, 27 x 27, groups=2),
    with fewer images and channels, through conv2d's automatic choice (Winograd)."""
    torch = pytest.importorskip("torch", reason="torch is the test oracle for conv2d")
    rng = np.random.default_rng(2)
    for x_shape, weight_shape, pad, groups in [((6, 32, 13, 13), (48, 32, 3, 3), 1, 1),
                                               ((2, 64, 27, 27), (64, 32, 5, 5), 2, 2)]:
        x = rng.standard_normal(x_shape).astype(np.float32)
        assert conv2d_module.choose_algorithm(x, weight_shape, (1, 1), (pad, pad), (1, 1), groups) == "winograd"
        fan_in = weight_shape[1] * weight_shape[2] * weight_shape[3]
        weight = (rng.standard_normal(weight_shape) / np.sqrt(fan_in)).astype(np.float32)
        bias = rng.standard_normal(weight_shape[0]).astype(np.float32)
        y, saved = conv2d_forward(x, weight, bias, stride=1, padding=pad, groups=groups)
        grad_output = rng.standard_normal(y.shape).astype(np.float32)
        grads = conv2d_backward(grad_output, saved)
        tensors = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
        y_torch = torch.nn.functional.conv2d(*tensors, stride=1, padding=pad, groups=groups)
        y_torch.backward(torch.tensor(grad_output))
        np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-4, atol=1e-4)
        for ours, theirs in zip(grads, tensors):
            reference = theirs.grad.numpy()
            assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()


# ------------------------------------------------------------------ filters kept for inference
def _counting_transforms(monkeypatch):
    calls = []
    original = winograd._transform_filters

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(winograd, "_transform_filters", counted)
    return calls


def test_inference_reuses_the_filters_of_an_unchanged_weight_and_notices_any_change(monkeypatch):
    calls = _counting_transforms(monkeypatch)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 16, 30, 30)).astype(np.float32)       # 900 pixels: Winograd
    weight = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)

    def fresh():
        return conv2d_module.forward(x, weight, bias, padding=1)[0]

    for _ in range(3):
        assert np.array_equal(conv2d_module.inference(x, weight, bias, padding=1), fresh())
    assert len(calls) == 1 + 3                                 # one kept transform, three forwards
    for change in (lambda w: w.__setitem__((3, 2, 1, 1), w[3, 2, 1, 1] + 1),   # an in-place step
                   lambda w: w.__setitem__((0, 0, 0, 0), -0.0),
                   lambda w: w.__setitem__((0, 0, 0, 0), 0.0),                 # +0 after -0: other bits
                   lambda w: w.__setitem__((5, 5, 2, 2), np.nan)):
        change(weight)
        calls.clear()
        kept = conv2d_module.inference(x, weight, bias, padding=1)
        assert len(calls) == 1, "a changed weight must be transformed again"
        np.testing.assert_array_equal(kept, fresh())


def test_kept_filters_go_with_their_weight_and_respect_the_budget(monkeypatch):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 16, 30, 30)).astype(np.float32)
    weight = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    before = len(winograd._kept)
    conv2d_module.inference(x, weight, None, padding=1)
    assert len(winograd._kept) == before + 1
    del weight
    assert len(winograd._kept) == before               # freed with the array
    monkeypatch.setattr(winograd, "FILTER_CACHE_BYTES", winograd._kept_bytes[0])
    calls = _counting_transforms(monkeypatch)
    other = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    for _ in range(2):
        np.testing.assert_array_equal(conv2d_module.inference(x, other, None, padding=1),
                                      conv2d_module.forward(x, other, None, padding=1)[0])
    assert len(calls) == 4 and len(winograd._kept) == before   # over budget: nothing kept


def test_a_layer_without_a_graph_keeps_its_filters_and_matches_the_recorded_forward(monkeypatch):
    import tinynet
    from tinynet import nn
    calls = _counting_transforms(monkeypatch)
    layer = nn.Conv2d(16, 20, 3, padding=1)
    x = tinynet.Tensor(np.random.default_rng(11).standard_normal((1, 16, 30, 30)).astype(np.float32))
    recorded = layer(x).data
    with tinynet.no_grad():
        calls.clear()
        first, second = layer(x).data, layer(x).data
    assert len(calls) == 1
    np.testing.assert_array_equal(first, recorded)
    np.testing.assert_array_equal(second, recorded)
