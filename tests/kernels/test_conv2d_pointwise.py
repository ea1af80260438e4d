"""1x1 convolutions run as plain GEMMs on x's own layout (no im2col): against im2col, torch, and
central differences, with strides and groups drawn by hypothesis."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet.kernels import conv2d
from tinynet.nn import functional as F


@st.composite
def pointwise_cases(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    return dict(batch=draw(st.integers(1, 3)), in_channels=groups * draw(st.integers(1, 3)),
                out_channels=groups * draw(st.integers(1, 3)), groups=groups,
                height=draw(st.integers(1, 7)), width=draw(st.integers(1, 7)),
                stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


def _arrays(case, dtype=np.float64):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["batch"], case["in_channels"], case["height"], case["width"])).astype(dtype)
    weight = rng.standard_normal((case["out_channels"], case["in_channels"] // case["groups"], 1, 1)).astype(dtype)
    bias = rng.standard_normal(case["out_channels"]).astype(dtype) if case["bias"] else None
    return rng, x, weight, bias


@given(pointwise_cases())
@settings(max_examples=30)
def test_pointwise_matches_im2col_forward_and_backward(case):
    rng, x, weight, bias = _arrays(case)
    y, saved = conv2d.forward(x, weight, bias, stride=case["stride"], groups=case["groups"])
    assert saved.algorithm == "pointwise"
    grad = rng.standard_normal(y.shape)
    ours = (y,) + conv2d.backward(grad, saved)
    with conv2d.use_algorithm("im2col"):
        y_reference, saved_reference = conv2d.forward(x, weight, bias, stride=case["stride"], groups=case["groups"])
        assert saved_reference.algorithm == "im2col"
        reference = (y_reference,) + conv2d.backward(grad, saved_reference)
    for a, b in zip(ours, reference):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@given(pointwise_cases())
@settings(max_examples=15)
def test_pointwise_gradients_match_central_differences(case):
    _, x, weight, bias = _arrays(case)
    inputs = [tinynet.tensor(x, requires_grad=True), tinynet.tensor(weight, requires_grad=True)]
    if bias is not None:
        inputs.append(tinynet.tensor(bias, requires_grad=True))

    def function(x, weight, bias=None):
        return F.conv2d(x, weight, bias, stride=case["stride"], groups=case["groups"])

    assert tinynet.gradcheck(function, inputs, atol=1e-7, rtol=1e-6)


def test_pointwise_matches_torch_in_float32():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64, 14, 14)).astype(np.float32)
    weight = (rng.standard_normal((32, 32, 1, 1)) / 8).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    y, saved = conv2d.forward(x, weight, bias, stride=2, groups=2)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    grads = conv2d.backward(grad, saved)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=2, groups=2)
    ty.backward(torch.tensor(grad))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    for ours, theirs in zip(grads, (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-3)


def test_pointwise_gpu_path_matches_the_cpu(gpu_xp):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    y, saved = conv2d.forward(x, weight, bias, stride=2, groups=2)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    expected = (y,) + conv2d.backward(grad, saved)
    y_gpu, saved_gpu = conv2d.forward(gpu_xp.asarray(x), gpu_xp.asarray(weight), gpu_xp.asarray(bias),
                                      stride=2, groups=2)
    assert saved_gpu.algorithm == "pointwise" and isinstance(y_gpu, gpu_xp.ndarray)
    results = (y_gpu,) + conv2d.backward(gpu_xp.asarray(grad), saved_gpu)
    for ours, reference in zip(results, expected):
        assert isinstance(ours, gpu_xp.ndarray)
        np.testing.assert_allclose(gpu_xp.asnumpy(ours), reference, rtol=1e-5, atol=1e-5)
