"""Tests of strided convolution through its space-to-depth, stride-1 rewriting: the rearrangements
and their adjoints, the seven loops, numerical gradients, the dispatch from conv2d, and PyTorch."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.gradcheck import numerical_gradient
from tinynet.kernels import conv2d as conv2d_module
from tinynet.kernels import conv2d_space_to_depth as s2d

from references import conv2d as reference_conv2d  # noqa: E402


@st.composite
def strided_configs(draw):
    """Strides 2-4 (each axis its own), kernels whose stride-1 form is square (Winograd's r x r)."""
    groups = draw(st.integers(1, 2))
    stride = (draw(st.integers(2, 4)), draw(st.integers(2, 4)))
    blocks = draw(st.integers(2, 4))                          # ceil(k / s), the same on both axes
    kernel = tuple(draw(st.integers((blocks - 1) * s + 1, blocks * s)) for s in stride)
    padding = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    size = tuple(draw(st.integers(max(1, k - 2 * p), max(1, k - 2 * p) + 3 * s))
                 for k, p, s in zip(kernel, padding, stride))
    return dict(batch=draw(st.integers(1, 2)), channels=groups * draw(st.integers(1, 2)),
                out_channels=groups * draw(st.integers(1, 3)), size=size, kernel=kernel, stride=stride,
                padding=padding, groups=groups, with_bias=draw(st.booleans()))


def make(config, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((config["batch"], config["channels"]) + config["size"]).astype(dtype)
    weight = rng.standard_normal((config["out_channels"], config["channels"] // config["groups"])
                                 + config["kernel"]).astype(dtype)
    bias = rng.standard_normal(config["out_channels"]).astype(dtype) if config["with_bias"] else None
    return x, weight, bias


@settings(max_examples=40, deadline=None)
@given(config=strided_configs(), seed=st.integers(0, 2**16))
def test_forward_matches_the_seven_loops(config, seed):
    x, weight, bias = make(config, seed)
    y = s2d.forward(x, weight, bias, config["stride"], config["padding"], config["groups"])
    expected = reference_conv2d(x, weight, bias, config["stride"], config["padding"], (1, 1), config["groups"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(config=strided_configs(), seed=st.integers(0, 2**16))
def test_backward_matches_numerical_gradients(config, seed):
    x, weight, bias = make(config, seed)
    stride, padding, groups = config["stride"], config["padding"], config["groups"]

    def forward():
        return s2d.forward(x, weight, bias, stride, padding, groups)
    grad_output = np.random.default_rng(seed + 1).standard_normal(forward().shape)
    grad_input, grad_weight = s2d.backward(grad_output, x, weight, stride, padding, groups)
    assert grad_input.shape == x.shape and grad_weight.shape == weight.shape
    np.testing.assert_allclose(grad_input, numerical_gradient(forward, x, grad_output), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_weight, numerical_gradient(forward, weight, grad_output), rtol=1e-6, atol=1e-6)
    only_weight = s2d.backward(grad_output, x, weight, stride, padding, groups, need_input_grad=False)
    assert only_weight[0] is None
    np.testing.assert_allclose(only_weight[1], grad_weight, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(config=strided_configs(), seed=st.integers(0, 2**16))
def test_the_rearrangements_are_adjoint(config, seed):
    """<S x, y> = <x, S^T y> for space_to_depth / depth_to_space and the weight pair: the backward
    pass is exactly the transpose of the forward rearrangement (padding and unread rows included)."""
    x, weight, _ = make(config, seed)
    stride, padding = config["stride"], config["padding"]
    x_shape_s2d, weight_shape_s2d = s2d.transformed_shapes(x.shape, weight.shape, stride, padding)
    rng = np.random.default_rng(seed + 2)
    moved = s2d.space_to_depth(x, stride, padding, *x_shape_s2d[2:])
    assert moved.shape == x_shape_s2d
    probe = rng.standard_normal(x_shape_s2d)
    assert np.vdot(moved, probe) == pytest.approx(np.vdot(x, s2d.depth_to_space(probe, x.shape, stride, padding)))
    moved_weight = s2d.rearrange_weight(weight, stride)
    assert moved_weight.shape == weight_shape_s2d
    probe = rng.standard_normal(weight_shape_s2d)
    assert np.vdot(moved_weight, probe) == pytest.approx(
        np.vdot(weight, s2d.weight_gradient_back(probe, weight.shape, stride)))


def test_alexnet_conv1_becomes_a_3x3_convolution_on_48_channels():
    assert s2d.transformed_shapes((64, 3, 227, 227), (96, 3, 11, 11), (4, 4), (0, 0)) == \
        ((64, 48, 57, 57), (96, 48, 3, 3))
    assert s2d.supports((64, 3, 227, 227), (96, 3, 11, 11), (4, 4), (0, 0), (1, 1), 1)
    assert not s2d.supports((64, 3, 227, 227), (96, 3, 11, 11), (1, 1), (0, 0), (1, 1), 1)   # stride 1
    assert not s2d.supports((64, 3, 227, 227), (96, 3, 11, 11), (4, 4), (0, 0), (2, 2), 1)   # dilated


@pytest.mark.parametrize("batch, size, rewritten", [
    (1, 227, False), (4, 227, False), (8, 227, True), (64, 227, True),      # 196, 784, 1568 tiles
    (8, 128, False), (16, 128, True), (32, 128, True),                     # 800, 1600, 3200 tiles
])
def test_few_images_stay_on_im2col(batch, size, rewritten):
    """Below MIN_TILES Winograd tiles (predicting one photo, the explainer) im2col measured as fast
    or faster than the rewriting; the training batches keep it."""
    shape = (batch, 3, size, size)
    assert s2d.supports(shape, (96, 3, 11, 11), (4, 4), (0, 0), (1, 1), 1) is rewritten
    x = np.zeros(shape, dtype=np.float32)
    expected = "space_to_depth" if rewritten else "im2col"
    assert conv2d_module.choose_algorithm(x, (96, 3, 11, 11), (4, 4), (0, 0), (1, 1), 1) == expected


def test_conv2d_dispatches_conv1_here_and_backward_follows(monkeypatch):
    """conv2d picks the rewriting for conv1's geometry, records it, and backward differentiates it;
    a planted backward that ran im2col's formulas on the rewritten weights would break the comparison."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 3, 67, 67)).astype(np.float32)     # conv1 at 67 px: 15 x 15 outputs, 25 tiles each
    weight = (0.1 * rng.standard_normal((96, 3, 11, 11))).astype(np.float32)
    bias = rng.standard_normal(96).astype(np.float32)
    y, saved = conv2d_module.forward(x, weight, bias, stride=4)
    assert saved.algorithm == "space_to_depth"
    grad_output = rng.standard_normal(y.shape).astype(np.float32)
    grads = conv2d_module.backward(grad_output, saved)
    with conv2d_module.use_algorithm("im2col"):
        y_im2col, saved_im2col = conv2d_module.forward(x, weight, bias, stride=4)
        expected = conv2d_module.backward(grad_output, saved_im2col)
    assert saved_im2col.algorithm == "im2col"
    np.testing.assert_allclose(y, y_im2col, rtol=1e-4, atol=2e-4 * np.abs(y_im2col).max())
    for ours, theirs in zip(grads, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-4 * np.abs(theirs).max())


@settings(max_examples=10, deadline=None)
@given(config=strided_configs(), seed=st.integers(0, 2**16))
def test_forward_and_gradients_match_torch_in_float32(config, seed):
    torch = pytest.importorskip("torch", reason="torch is the test oracle for conv2d")
    x, weight, bias = make(config, seed, np.float32)
    stride, padding, groups = config["stride"], config["padding"], config["groups"]
    y = s2d.forward(x, weight, bias, stride, padding, groups)
    grad_output = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    grad_input, grad_weight = s2d.backward(grad_output, x, weight, stride, padding, groups)
    x_torch, weight_torch = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    y_torch = torch.nn.functional.conv2d(x_torch, weight_torch, None if bias is None else torch.tensor(bias),
                                         stride=stride, padding=padding, groups=groups)
    y_torch.backward(torch.tensor(grad_output))
    scale = max(1.0, float(np.abs(y).max()))
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(grad_input, x_torch.grad.numpy(), rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(grad_weight, weight_torch.grad.numpy(), rtol=1e-4,
                               atol=1e-4 * max(1.0, float(np.abs(grad_weight).max())))
