"""Tests of the linear and ReLU kernels (kernels/linear.py, kernels/relu.py)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet import backend
from tinynet.gradcheck import numerical_gradient
from tinynet.kernels._numba import ELEMENTWISE_GRAIN
from tinynet.kernels.linear import linear_backward, linear_forward
from tinynet.kernels.relu import relu_backward, relu_forward


# ---------------------------------------------------------------- the textbook definitions
def naive_linear(x, weight, bias):
    """y[n, i] = sum_k x[n, k] W[i, k] + b[i], one sum at a time, over every leading index n."""
    out_features, in_features = weight.shape
    y = np.zeros(x.shape[:-1] + (out_features,))
    for n in np.ndindex(x.shape[:-1]):
        for i in range(out_features):
            total = 0.0 if bias is None else bias[i]
            for k in range(in_features):
                total += x[n + (k,)] * weight[i, k]
            y[n + (i,)] = total
    return y


@st.composite
def linear_cases(draw):
    leading = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    in_features, out_features = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = rng.standard_normal(leading + (in_features,))
    weight = rng.standard_normal((out_features, in_features))
    bias = rng.standard_normal(out_features) if draw(st.booleans()) else None
    grad_output = rng.standard_normal(leading + (out_features,))
    return x, weight, bias, grad_output


# ---------------------------------------------------------------- linear
@settings(max_examples=40)
@given(case=linear_cases())
def test_linear_forward_matches_naive_loops(case):
    x, weight, bias, _ = case
    y = linear_forward(x, weight, bias)
    assert y.shape == x.shape[:-1] + (weight.shape[0],)
    np.testing.assert_allclose(y, naive_linear(x, weight, bias), rtol=1e-12, atol=1e-12)


@settings(max_examples=25)
@given(case=linear_cases())
def test_linear_backward_matches_numerical_gradient(case):
    x, weight, bias, grad_output = case
    x, weight = np.ascontiguousarray(x), np.ascontiguousarray(weight)
    grad_input, grad_weight, grad_bias = linear_backward(grad_output, x, weight, has_bias=bias is not None)
    forward = lambda: linear_forward(x, weight, bias)  # noqa: E731
    np.testing.assert_allclose(grad_input, numerical_gradient(forward, x, grad_output), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_weight, numerical_gradient(forward, weight, grad_output),
                               rtol=1e-6, atol=1e-8)
    if bias is None:
        assert grad_bias is None
    else:
        np.testing.assert_allclose(grad_bias, numerical_gradient(forward, bias, grad_output),
                                   rtol=1e-6, atol=1e-8)


@settings(max_examples=25)
@given(case=linear_cases())
def test_linear_matches_torch(case):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for this test")
    x, weight, bias, grad_output = (None if a is None else a.astype(np.float32) for a in case)
    x_t, w_t = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    b_t = None if bias is None else torch.tensor(bias, requires_grad=True)
    y_t = torch.nn.functional.linear(x_t, w_t, b_t)
    y_t.backward(torch.tensor(grad_output))

    y = linear_forward(x, weight, bias)
    grad_input, grad_weight, grad_bias = linear_backward(grad_output, x, weight, has_bias=bias is not None)
    assert y.dtype == grad_input.dtype == grad_weight.dtype == np.float32
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_input, x_t.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_weight, w_t.grad.numpy(), rtol=1e-5, atol=1e-5)
    if bias is not None:
        np.testing.assert_allclose(grad_bias, b_t.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_linear_alexnet_sized_layer_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for this test")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1024)).astype(np.float32)
    weight = (rng.standard_normal((256, 1024)) / 32).astype(np.float32)
    bias = rng.standard_normal(256).astype(np.float32)
    grad_output = rng.standard_normal((16, 256)).astype(np.float32)
    x_t, w_t, b_t = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    y_t = torch.nn.functional.linear(x_t, w_t, b_t)
    y_t.backward(torch.tensor(grad_output))
    grads = linear_backward(grad_output, x, weight)
    np.testing.assert_allclose(linear_forward(x, weight, bias), y_t.detach().numpy(), rtol=1e-4, atol=1e-4)
    for ours, theirs in zip(grads, (x_t.grad, w_t.grad, b_t.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-4)


def test_linear_backward_skips_gradients_not_needed():
    rng = np.random.default_rng(1)
    x, weight, grad_output = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal((3, 2))
    assert linear_backward(grad_output, x, weight, need_input_grad=False, need_weight_grad=False,
                           has_bias=False) == (None, None, None)
    grad_input, grad_weight, grad_bias = linear_backward(grad_output, x, weight, need_input_grad=False,
                                                         has_bias=False)
    assert grad_input is None and grad_bias is None
    np.testing.assert_allclose(grad_weight, grad_output.T @ x)


def test_linear_single_sample_vector():
    rng = np.random.default_rng(2)
    x, weight, bias = rng.standard_normal(4), rng.standard_normal((3, 4)), rng.standard_normal(3)
    np.testing.assert_allclose(linear_forward(x, weight, bias), weight @ x + bias)
    grad_input, grad_weight, grad_bias = linear_backward(np.ones(3), x, weight)
    assert grad_input.shape == (4,) and grad_weight.shape == (3, 4) and grad_bias.shape == (3,)


def test_linear_errors_name_both_shapes():
    x, weight = np.ones((5, 4)), np.ones((3, 6))
    with pytest.raises(ValueError, match="linear.*\\(5, 4\\).*\\(3, 6\\)"):
        linear_forward(x, weight)
    with pytest.raises(ValueError, match="linear.*2-D weight.*\\(3, 4, 1\\)"):
        linear_forward(x, np.ones((3, 4, 1)))
    with pytest.raises(ValueError, match="bias.*\\(3,\\).*\\(4,\\)"):
        linear_forward(x, np.ones((3, 4)), np.ones(4))
    with pytest.raises(ValueError, match="linear backward.*\\(5, 3\\).*\\(5, 2\\)"):
        linear_backward(np.ones((5, 2)), x, np.ones((3, 4)))
    with pytest.raises(ValueError, match="linear.*\\(5, 4\\).*\\(3, 6\\)"):
        linear_backward(np.ones((5, 3)), x, weight)


def naive_linear_gradients(grad_output, x, weight):
    """dx[n, k] = sum_i g[n, i] W[i, k];  dW[i, k] = sum_n g[n, i] x[n, k];  db[i] = sum_n g[n, i],
    one product at a time over the flattened leading indices n."""
    g = grad_output.reshape(-1, weight.shape[0]).astype(np.float64)
    rows = x.reshape(-1, weight.shape[1]).astype(np.float64)
    grad_x, grad_w, grad_b = np.zeros(rows.shape), np.zeros(weight.shape), np.zeros(weight.shape[0])
    for n in range(rows.shape[0]):
        for i in range(weight.shape[0]):
            grad_b[i] += g[n, i]
            for k in range(weight.shape[1]):
                grad_x[n, k] += g[n, i] * weight[i, k]
                grad_w[i, k] += g[n, i] * rows[n, k]
    return grad_x.reshape(x.shape), grad_w, grad_b


def test_linear_gpu_path_matches_the_textbook_sums(gpu_xp):
    """The GPU path against the naive loops (not against the CPU path, which runs the same
    array-module calls and would share any bug)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    weight = rng.standard_normal((4, 5)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    grad_output = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y_gpu = linear_forward(gpu_xp.asarray(x), gpu_xp.asarray(weight), gpu_xp.asarray(bias))
    grads_gpu = linear_backward(gpu_xp.asarray(grad_output), gpu_xp.asarray(x), gpu_xp.asarray(weight))
    assert isinstance(y_gpu, gpu_xp.ndarray) and y_gpu.dtype == np.float32
    np.testing.assert_allclose(gpu_xp.asnumpy(y_gpu), naive_linear(x, weight, bias), rtol=1e-5, atol=1e-5)
    for ours, expected in zip(grads_gpu, naive_linear_gradients(grad_output, x, weight)):
        assert isinstance(ours, gpu_xp.ndarray) and ours.dtype == np.float32
        np.testing.assert_allclose(gpu_xp.asnumpy(ours), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- ReLU
@st.composite
def relu_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    x = np.asarray(rng.standard_normal(shape))   # asarray: shape () gives a float otherwise
    x[np.abs(x) < 0.05] = 0.0          # exact zeros: the kink, where the gradient must be 0
    return x, np.asarray(rng.standard_normal(shape))


@settings(max_examples=30)
@given(case=relu_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_relu_matches_definition_and_torch(case, dtype):
    x, grad_output = (a.astype(dtype) for a in case)
    y = relu_forward(x)
    grad = relu_backward(grad_output, y)
    assert y.dtype == grad.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
    np.testing.assert_array_equal(grad, np.where(x > 0, grad_output, 0))
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for this part")
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch.relu(x_t)
    y_t.backward(torch.tensor(grad_output))
    np.testing.assert_array_equal(y, y_t.detach().numpy())
    np.testing.assert_array_equal(grad, x_t.grad.numpy())


@settings(max_examples=20)
@given(case=relu_cases())
def test_relu_backward_matches_numerical_gradient(case):
    x, grad_output = case
    x = np.where(x == 0.0, 0.5, x)   # away from the kink (a new, contiguous array)
    expected = numerical_gradient(lambda: relu_forward(x), x, grad_output)
    np.testing.assert_allclose(relu_backward(grad_output, relu_forward(x)), expected, rtol=1e-7, atol=1e-9)


def test_relu_gradient_is_zero_at_zero_and_where_off_even_for_nan():
    x = np.array([-1.0, 0.0, 2.0], dtype=np.float32)
    y = relu_forward(x)
    grad = relu_backward(np.array([np.nan, np.inf, 3.0], dtype=np.float32), y)
    np.testing.assert_array_equal(grad, [0.0, 0.0, 3.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_large_arrays_take_the_one_pass_loop(dtype):
    """From 4096 elements the CPU backward is a numba loop: same results as `where`, for
    NaN and inf gradients, NaN outputs, and non-contiguous inputs."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 7, 11, 13)).astype(dtype)
    x[0, 0, 0, :3] = [0.0, np.nan, -0.0]
    grad_output = rng.standard_normal(x.shape).astype(dtype)
    grad_output[0, 1, 0, :2] = [np.nan, np.inf]
    x[0, 1, 0, :2] = -1.0
    y = relu_forward(x)
    for grad, out in [(grad_output, y), (grad_output.transpose(0, 1, 3, 2), y.transpose(0, 1, 3, 2))]:
        result = relu_backward(grad, out)
        assert result.dtype == dtype and result.shape == grad.shape
        np.testing.assert_array_equal(result, np.where(out > 0, grad, 0))


@pytest.mark.parametrize("threads", [1, 3])
def test_relu_backward_split_into_ranges_selects_each_elements_own_gradient(threads):
    """Past a few ELEMENTWISE_GRAIN elements the backward runs in ranges (on several threads):
    each range must pair its own gradients with its own outputs."""
    rng = np.random.default_rng(5)
    size = 5 * ELEMENTWISE_GRAIN + 17                 # ranges of uneven length
    y = relu_forward(rng.standard_normal(size).astype(np.float32))
    grad_output = rng.standard_normal(size).astype(np.float32)
    previous = backend.get_num_threads()
    backend.set_num_threads(threads)
    try:
        result = relu_backward(grad_output, y)
    finally:
        backend.set_num_threads(previous)
    np.testing.assert_array_equal(result, np.where(y > 0, grad_output, 0))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_loop_gives_the_bits_of_maximum(threads, dtype):
    """From 4096 contiguous elements the CPU forward is a numba loop, split into ranges past
    ELEMENTWISE_GRAIN: NaN kept, -0 and negative infinity to +0, in place or not, every range its
    own elements; non-contiguous inputs take ``maximum`` itself."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal(3 * ELEMENTWISE_GRAIN + 4099).astype(dtype)
    specials = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, -np.nan], dtype=dtype)
    x[rng.choice(x.size, 600, replace=False)] = np.tile(specials, 100)
    expected = np.maximum(x, dtype(0))
    previous = backend.get_num_threads()
    backend.set_num_threads(threads)
    try:
        for case in (x, x[:5000], x[:7 * 5000].reshape(-1, 7)[:, ::2]):
            y = relu_forward(case)
            assert y.dtype == dtype and y.shape == case.shape
            reference = np.maximum(case, dtype(0))
            np.testing.assert_array_equal(y, reference)
            np.testing.assert_array_equal(np.signbit(y), np.signbit(reference))
        shifted = x.copy()                           # out overlaps x one element further on
        expected_shifted = np.maximum(shifted[:-1], dtype(0))
        relu_forward(shifted[:-1], out=shifted[1:])
        np.testing.assert_array_equal(shifted[1:], expected_shifted)
        in_place = x.copy()
        assert relu_forward(in_place, out=in_place) is in_place
        np.testing.assert_array_equal(np.signbit(in_place), np.signbit(expected))
        np.testing.assert_array_equal(in_place, expected)
    finally:
        backend.set_num_threads(previous)


def test_relu_in_place():
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    y = relu_forward(x, out=x)
    assert y is x
    np.testing.assert_array_equal(x, [[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(relu_backward(np.ones_like(x), y), [[0.0, 1.0], [1.0, 0.0]])


def test_relu_backward_shape_mismatch():
    with pytest.raises(ValueError, match="relu.*\\(2, 3\\).*\\(3, 2\\)"):
        relu_backward(np.ones((2, 3)), np.ones((3, 2)))


def test_relu_gpu_path_gives_gpu_arrays(gpu_xp):
    x = np.array([[-1.0, 0.0, 2.5]], dtype=np.float32)
    y_gpu = relu_forward(gpu_xp.asarray(x))
    grad_gpu = relu_backward(gpu_xp.asarray(np.full_like(x, 2.0)), y_gpu)
    assert isinstance(y_gpu, gpu_xp.ndarray) and isinstance(grad_gpu, gpu_xp.ndarray)
    assert y_gpu.dtype == grad_gpu.dtype == np.float32
    np.testing.assert_array_equal(gpu_xp.asnumpy(y_gpu), [[0.0, 0.0, 2.5]])
    np.testing.assert_array_equal(gpu_xp.asnumpy(grad_gpu), [[0.0, 0.0, 2.0]])
