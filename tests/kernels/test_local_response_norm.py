"""Tests of the local response normalization kernels (kernels/local_response_norm.py)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptx import compile_kernels_to_ptx
from tinynet.gradcheck import numerical_gradient
from tinynet.kernels import local_response_norm as lrn
from tinynet.kernels.local_response_norm import local_response_norm_backward, local_response_norm_forward


# ---------------------------------------------------------------- the textbook definition
def naive_window(c, size, channels):
    """Channels c - size//2 ... c + (size-1)//2, clipped to [0, channels) (PyTorch's window)."""
    return [j for j in range(c - size // 2, c + (size - 1) // 2 + 1) if 0 <= j < channels]


def naive_lrn(x, size, alpha, beta, k, alpha_scaled_by_size=True):
    """b_c = a_c / (k + alpha' * sum_{c' in window(c)} a_c'^2)^beta, one element at a time."""
    alpha_effective = alpha / size if alpha_scaled_by_size else alpha
    x = np.asarray(x, dtype=np.float64)
    columns = x.reshape(x.shape[0], x.shape[1], -1)
    y = np.zeros_like(columns)
    scale = np.zeros_like(columns)
    for n in range(columns.shape[0]):
        for c in range(columns.shape[1]):
            for p in range(columns.shape[2]):
                total = 0.0
                for j in naive_window(c, size, columns.shape[1]):
                    total += columns[n, j, p] ** 2
                scale[n, c, p] = k + alpha_effective * total
                y[n, c, p] = columns[n, c, p] / scale[n, c, p] ** beta
    return y.reshape(x.shape), scale.reshape(x.shape)


# ---------------------------------------------------------------- strategies
parameters = st.fixed_dictionaries({
    "size": st.integers(1, 7),                      # even sizes and sizes > C included
    "alpha": st.sampled_from([1e-4, 0.01, 0.3, 1.0]),  # large alpha: a wrong window cannot hide
    "beta": st.sampled_from([0.75, 0.5, 1.3, 0.2]),
    "k": st.sampled_from([1.0, 2.0, 0.5]),
    "alpha_scaled_by_size": st.booleans(),
})


@st.composite
def inputs(draw, max_batch=3, max_channels=8, max_pixels=4, spatial_dims=(2,)):
    rank = draw(st.sampled_from(spatial_dims))
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels))) + tuple(
        draw(st.integers(1, max_pixels)) for _ in range(rank))
    seed = draw(st.integers(0, 2**31 - 1))
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------- forward vs the definition
@settings(max_examples=40)
@given(x=inputs(spatial_dims=(0, 1, 2, 3)), params=parameters)
def test_forward_matches_naive_loops(x, params):
    y, scale = local_response_norm_forward(x, **params)
    y_expected, scale_expected = naive_lrn(x, **params)
    assert y.shape == x.shape and scale.shape == x.shape
    np.testing.assert_allclose(scale, scale_expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, y_expected, rtol=1e-12, atol=1e-12)


def test_worked_number_of_the_docstring():
    """Five channels equal to 1, paper values k=2, n=5, alpha=1e-4, beta=0.75: the middle channel."""
    x = np.ones((1, 5, 1, 1))
    y_paper, scale_paper = local_response_norm_forward(x, 5, 1e-4, 0.75, 2.0, alpha_scaled_by_size=False)
    y_torch, scale_torch = local_response_norm_forward(x, 5, 1e-4, 0.75, 2.0, alpha_scaled_by_size=True)
    assert scale_paper[0, 2, 0, 0] == pytest.approx(2.0005, rel=1e-14)
    assert scale_torch[0, 2, 0, 0] == pytest.approx(2.0001, rel=1e-14)
    assert 1 / y_paper[0, 2, 0, 0] == pytest.approx(1.6821081568099208, rel=1e-12)
    assert 1 / y_torch[0, 2, 0, 0] == pytest.approx(1.6818558973444113, rel=1e-12)
    # the border channel 0 sees only channels 0..2, the divisor of alpha stays the size
    assert scale_torch[0, 0, 0, 0] == pytest.approx(2 + 1e-4 / 5 * 3, rel=1e-14)


def test_even_size_window_reaches_down():
    """size 2: channel c is normalised by channels c-1 and c (PyTorch's padding: size//2 before)."""
    x = np.zeros((1, 3, 1, 1))
    x[0, 0] = 1.0
    _, scale = local_response_norm_forward(x, 2, alpha=2.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(scale[0, :, 0, 0], [2.0, 2.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_noncontiguous_input(dtype):
    base = np.random.default_rng(1).standard_normal((2, 3, 6, 5)).astype(dtype)
    x = base.transpose(0, 3, 2, 1)          # (2, 5, 6, 3), not contiguous
    y, scale = local_response_norm_forward(x, 3, alpha=0.5, beta=0.75, k=1.0)
    assert y.dtype == dtype and scale.dtype == dtype
    y_expected, _ = naive_lrn(x, 3, 0.5, 0.75, 1.0)
    np.testing.assert_allclose(y, y_expected, rtol=2e-6 if dtype == np.float32 else 1e-12)
    grad = local_response_norm_backward(np.ones_like(x), x, y, scale, 3, alpha=0.5, beta=0.75, k=1.0)
    assert grad.dtype == dtype and grad.shape == x.shape


def test_many_pixels_split_into_several_cpu_tasks():
    """More pixels than one CPU task holds: the block boundaries must not matter."""
    x = np.random.default_rng(2).standard_normal((1, 6, 3, 1100))
    y, _ = local_response_norm_forward(x, 5, alpha=0.8, beta=0.75, k=1.0)
    np.testing.assert_allclose(y, naive_lrn(x, 5, 0.8, 0.75, 1.0)[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(0, 3, 2, 2), (2, 0, 2, 2), (2, 3, 0, 2)])
def test_empty_inputs(shape):
    x = np.ones(shape, dtype=np.float32)
    y, scale = local_response_norm_forward(x, 5)
    grad = local_response_norm_backward(np.ones_like(x), x, y, scale, 5)
    assert y.shape == scale.shape == grad.shape == shape and grad.dtype == np.float32


# ---------------------------------------------------------------- backward
@settings(max_examples=30)
@given(x=inputs(max_batch=2, max_channels=7, max_pixels=3, spatial_dims=(0, 1, 2)), params=parameters,
       seed=st.integers(0, 2**31 - 1))
def test_backward_matches_numerical_gradient(x, params, seed):
    x = np.ascontiguousarray(x)
    grad_output = np.random.default_rng(seed).standard_normal(x.shape)
    y, scale = local_response_norm_forward(x, **params)
    grad = local_response_norm_backward(grad_output, x, y, scale, **params)
    expected = numerical_gradient(lambda: local_response_norm_forward(x, **params)[0], x, grad_output)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)


def test_backward_window_is_mirrored_for_even_sizes():
    """dx_0 depends on dy_1 for size 2 (channel 1's window holds 0), not the other way round."""
    x = np.array([1.0, 1.0, 1.0]).reshape(1, 3, 1, 1)
    y, scale = local_response_norm_forward(x, 2, alpha=2.0, beta=1.0, k=1.0)
    only_channel_1 = np.array([0.0, 1.0, 0.0]).reshape(1, 3, 1, 1)
    grad = local_response_norm_backward(only_channel_1, x, y, scale, 2, alpha=2.0, beta=1.0, k=1.0)
    assert grad[0, 0, 0, 0] != 0.0
    assert grad[0, 2, 0, 0] == 0.0


def test_k_is_not_needed_by_the_backward():
    x = np.random.default_rng(3).standard_normal((2, 4, 2, 2))
    y, scale = local_response_norm_forward(x, 3, alpha=0.5, beta=0.75, k=2.0)
    g = np.ones_like(x)
    np.testing.assert_array_equal(local_response_norm_backward(g, x, y, scale, 3, 0.5, 0.75, k=2.0),
                                  local_response_norm_backward(g, x, y, scale, 3, 0.5, 0.75, k=123.0))


# ---------------------------------------------------------------- PyTorch as the oracle
@settings(max_examples=30)
@given(x=inputs(max_channels=10, max_pixels=5, spatial_dims=(1, 2, 3)), params=parameters,
       seed=st.integers(0, 2**31 - 1))
def test_matches_torch_forward_and_backward(x, params, seed):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for this test")
    x = x.astype(np.float32)
    grad_output = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    size, alpha = params["size"], params["alpha"]
    # the paper's convention is PyTorch's with alpha * size
    torch_alpha = alpha if params["alpha_scaled_by_size"] else alpha * size
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = torch.nn.functional.local_response_norm(x_torch, size, torch_alpha, params["beta"], params["k"])
    y_torch.backward(torch.tensor(grad_output))

    y, scale = local_response_norm_forward(x, **params)
    grad = local_response_norm_backward(grad_output, x, y, scale, **params)
    assert y.dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, x_torch.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [96, 256])
def test_matches_torch_at_alexnet_settings(channels):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for this test")
    rng = np.random.default_rng(channels)
    x = (3 * rng.standard_normal((2, channels, 13, 13))).astype(np.float32)
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = torch.nn.functional.local_response_norm(x_torch, 5, alpha=1e-4, beta=0.75, k=2.0)
    y_torch.backward(torch.tensor(grad_output))
    y, scale = local_response_norm_forward(x, 5, alpha=1e-4, beta=0.75, k=2.0)
    grad = local_response_norm_backward(grad_output, x, y, scale, 5, alpha=1e-4, beta=0.75, k=2.0)
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, x_torch.grad.numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the GPU path (simulated)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size, beta", [(5, 0.75), (4, 1.3), (9, 0.5)])
def test_gpu_path_matches_cpu(gpu_xp, dtype, size, beta):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 6, 3, 4)).astype(dtype)
    grad_output = rng.standard_normal(x.shape).astype(dtype)
    params = dict(alpha=0.7, beta=beta, k=1.5, alpha_scaled_by_size=size != 4)
    y, scale = local_response_norm_forward(x, size, **params)
    grad = local_response_norm_backward(grad_output, x, y, scale, size, **params)

    x_gpu, grad_output_gpu = gpu_xp.asarray(x), gpu_xp.asarray(grad_output)
    y_gpu, scale_gpu = local_response_norm_forward(x_gpu, size, **params)
    grad_gpu = local_response_norm_backward(grad_output_gpu, x_gpu, y_gpu, scale_gpu, size, **params)
    for array in (y_gpu, scale_gpu, grad_gpu):
        assert isinstance(array, gpu_xp.ndarray) and array.dtype == dtype and array.shape == x.shape
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gpu_xp.asnumpy(y_gpu), y, **tolerance)
    np.testing.assert_allclose(gpu_xp.asnumpy(scale_gpu), scale, **tolerance)
    np.testing.assert_allclose(gpu_xp.asnumpy(grad_gpu), grad, **tolerance)


def test_gpu_path_three_dimensional_input(gpu_xp):
    x = np.random.default_rng(4).standard_normal((2, 5, 7))
    y_gpu, _ = local_response_norm_forward(gpu_xp.asarray(x), 3, alpha=1.0, beta=0.75, k=1.0)
    np.testing.assert_allclose(gpu_xp.asnumpy(y_gpu), naive_lrn(x, 3, 1.0, 0.75, 1.0)[0], rtol=1e-12)


# ---------------------------------------------------------------- errors
def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="local_response_norm.*at least 2 dimensions.*\\(5,\\)"):
        local_response_norm_forward(np.ones(5), 3)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        local_response_norm_forward(np.ones((1, 3, 2, 2)), 0)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        local_response_norm_forward(np.ones((1, 3, 2, 2)), 2.5)
    with pytest.raises(ValueError, match="floating-point"):
        local_response_norm_forward(np.ones((1, 3, 2, 2), dtype=np.int64), 3)
    x = np.ones((1, 3, 2, 2))
    y, scale = local_response_norm_forward(x, 3)
    with pytest.raises(ValueError, match="grad_output.*\\(1, 3, 2, 2\\).*\\(1, 3, 2\\)"):
        local_response_norm_backward(np.ones((1, 3, 2)), x, y, scale, 3)
    with pytest.raises(ValueError, match="scale"):
        local_response_norm_backward(np.ones_like(x), x, y, scale[:, :2], 3)


def test_module_docstring_states_both_conventions():
    doc = lrn.__doc__
    assert "alpha / size" in doc and "2.0005" in doc and "2.0001" in doc and "Backward" in doc


@pytest.mark.parametrize("on_gpu", [False, True], ids=["cpu", "gpu"])
def test_float32_window_sums_accumulate_in_float64(on_gpu, request):
    """A huge channel enters and leaves the running window sum: accumulated in float32,
    (1e8 + 1) - 1e8 leaves 0 (or 8) instead of 1, and the next channels' scale k + alpha * sum is
    wildly off.  The compiled kernels accumulate in float64; so must the GPU kernel as the CUDA
    simulator runs it (NumPy 2 keeps float32 * 1.0 in float32 there, unlike compiled code)."""
    x = np.array([1e4, 1.0, 1.0, 1.0, 1.0], dtype=np.float32).reshape(1, 5, 1, 1)
    settings = dict(size=2, alpha=1.0, beta=1.0, k=1e-3, alpha_scaled_by_size=False)
    expected, expected_scale = naive_lrn(x, **settings)
    if on_gpu:
        xp = request.getfixturevalue("gpu_xp")
        y, scale = local_response_norm_forward(xp.asarray(x), **settings)
        y, scale = xp.asnumpy(y), xp.asnumpy(scale)
    else:
        y, scale = local_response_norm_forward(x, **settings)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-6)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
