"""Tests of kernels/max_pool2d.py: naive loops, numerical gradients, PyTorch, the GPU path."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptx import compile_kernels_to_ptx
from tinynet.gradcheck import numerical_gradient
import tinynet
from tinynet import backend
from tinynet.kernels import max_pool2d as max_pool2d_kernel
from tinynet.kernels.max_pool2d import max_pool2d_backward, max_pool2d_forward, max_pool2d_values


# ----------------------------------------------------------------- the textbook definition
def naive_output_size(size, kernel, stride, padding, ceil_mode):
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # last window must start inside
        out -= 1
    return out


def naive_max_pool2d(x, kernel, stride, padding, ceil_mode=False):
    """Plain loops: the maximum over each window; padding is -inf; first maximum wins."""
    n_images, channels, height, width = x.shape
    out_h = naive_output_size(height, kernel[0], stride[0], padding[0], ceil_mode)
    out_w = naive_output_size(width, kernel[1], stride[1], padding[1], ceil_mode)
    y = np.zeros((n_images, channels, out_h, out_w), dtype=x.dtype)
    argmax = np.zeros((n_images, channels, out_h, out_w), dtype=np.int64)
    for n in range(n_images):
        for c in range(channels):
            for oh in range(out_h):
                for ow in range(out_w):
                    best, best_index = -np.inf, None
                    for i in range(kernel[0]):
                        for j in range(kernel[1]):
                            h = oh * stride[0] - padding[0] + i
                            w = ow * stride[1] - padding[1] + j
                            if 0 <= h < height and 0 <= w < width and (best_index is None or x[n, c, h, w] > best):
                                best, best_index = x[n, c, h, w], h * width + w
                    y[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = best_index
    return y, argmax


def naive_max_pool2d_backward(grad_output, argmax, input_shape):
    grad_input = np.zeros(input_shape, dtype=grad_output.dtype)
    width = input_shape[3]
    for index in np.ndindex(*grad_output.shape):
        n, c = index[:2]
        grad_input[n, c, argmax[index] // width, argmax[index] % width] += grad_output[index]
    return grad_input


# ----------------------------------------------------------------- strategies
@st.composite
def pooling_cases(draw, max_batch=2, max_channels=3, max_extra=8):
    """(shape, kernel, stride, padding, ceil_mode, seed) that PyTorch accepts.

    The spatial size starts at the smallest that fits the window (kernel = whole
    padded input) and strides go beyond the kernel (gaps between windows).
    """
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), kernel[0] - 2 * padding[0] + max_extra))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), kernel[1] - 2 * padding[1] + max_extra))
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), height, width)
    return shape, kernel, stride, padding, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


def distinct_values(shape, seed, dtype=np.float64):
    """A shuffled ramp: all values distinct and 0.1 apart, so no ties and no kinks within eps."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size / 2) * 0.1).reshape(shape).astype(dtype)


# ----------------------------------------------------------------- forward
@settings(max_examples=40)
@given(case=pooling_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_forward_matches_naive_loops(case, dtype):
    shape, kernel, stride, padding, ceil_mode, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y, argmax = max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    y_ref, argmax_ref = naive_max_pool2d(x, kernel, stride, padding, ceil_mode)
    assert y.dtype == dtype and argmax.dtype == np.int32
    assert y.shape == y_ref.shape
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)


@settings(max_examples=60)
@given(case=pooling_cases(max_extra=20), dtype=st.sampled_from([np.float32, np.float64]),
       threads=st.sampled_from([1, 3]))
def test_values_alone_are_the_forward_maxima_bit_for_bit(case, dtype, threads):
    """max_pool2d_values (no argmax, row at a time) gives the y of max_pool2d_forward: NaN, -inf,
    ties of 0.0 and -0.0 included, on any stride, padding and ceil_mode, split over threads."""
    shape, kernel, stride, padding, ceil_mode, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    specials = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0], dtype=dtype)
    x.reshape(-1)[rng.integers(0, x.size, size=max(1, x.size // 7))] = rng.choice(specials, max(1, x.size // 7))
    expected, _ = max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    previous = backend.get_num_threads()
    backend.set_num_threads(threads)
    try:
        y = max_pool2d_values(x, kernel, stride, padding, ceil_mode)
    finally:
        backend.set_num_threads(previous)
    assert y.dtype == dtype and y.shape == expected.shape
    np.testing.assert_array_equal(y.view(np.uint8), expected.view(np.uint8))   # the same bits


@st.composite
def inside_window_cases(draw):
    """The geometries with a kernel of their own for the windows inside the input (3x3 at stride
    2 or 1, 2x2 at 2), at sizes from one window to several vector widths of outputs."""
    size, stride = draw(st.sampled_from([(3, 2), (3, 1), (2, 2)]))
    padding = draw(st.integers(0, size // 2))
    height = draw(st.integers(max(1, size - 2 * padding), 40))
    width = draw(st.integers(max(1, size - 2 * padding), 70))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), height, width)
    return shape, (size, size), (stride, stride), (padding, padding), draw(st.booleans()), \
        draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60)
@given(case=inside_window_cases(), dtype=st.sampled_from([np.float32, np.float64]),
       threads=st.sampled_from([1, 3]))
def test_inside_window_kernels_match_the_window_at_a_time_loop(case, dtype, threads):
    """The written-out kernels for windows inside the input (and the general loop for the border
    around them) give the general loop's y and argmax bit for bit: ties of equal values and of
    0.0 / -0.0 go to the first in row-major order, a NaN wins, on any padding and ceil_mode; and
    the maxima without the argmax are the same bits."""
    shape, kernel, stride, padding, ceil_mode, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype)          # many ties
    specials = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0], dtype=dtype)
    x.reshape(-1)[rng.integers(0, x.size, size=max(1, x.size // 9))] = rng.choice(specials, max(1, x.size // 9))
    previous = backend.get_num_threads()
    backend.set_num_threads(threads)
    try:
        y, argmax = max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
        values = max_pool2d_values(x, kernel, stride, padding, ceil_mode)
    finally:
        backend.set_num_threads(previous)
    planes = x.reshape(-1, *shape[2:])
    expected = np.full((planes.shape[0],) + y.shape[2:], 7, dtype=dtype)
    expected_argmax = np.full(expected.shape, -1, dtype=argmax.dtype)
    max_pool2d_kernel._forward_tasks(planes, expected, expected_argmax, *kernel, *stride, *padding,
                                     0, 0, 0, 0, 0, planes.shape[0])      # nothing skipped
    np.testing.assert_array_equal(y.reshape(expected.shape).view(np.uint8), expected.view(np.uint8))
    np.testing.assert_array_equal(argmax.reshape(expected.shape), expected_argmax)
    np.testing.assert_array_equal(values.view(np.uint8), y.view(np.uint8))
    finite = np.where(np.isnan(x), -5, x)                       # the naive loops' own tie rule
    _, argmax_naive = naive_max_pool2d(finite, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(max_pool2d_forward(finite, kernel, stride, padding, ceil_mode)[1],
                                  argmax_naive)


def test_inside_windows_are_every_window_that_lies_in_the_input():
    """The fast kernel takes every output whose window needs no clipping, and only those."""
    inside = max_pool2d_kernel._inside_windows
    # AlexNet's pools (no padding, floor): all of them, so the general loop never runs
    assert inside((96, 55, 55), (96, 27, 27), 3, 3, 2, 2, 0, 0)[1:] == ((0, 27), (0, 27))
    # ResNet's 3x3/2 with padding 1 on 112: output 0 starts at -1, output 55 ends at 111
    assert inside((64, 112, 112), (64, 56, 56), 3, 3, 2, 2, 1, 1)[1:] == ((1, 56), (1, 56))
    # GoogLeNet's ceil-mode 3x3/2 on 112 -> 56: the last window would end at 113
    assert inside((64, 112, 112), (64, 56, 56), 3, 3, 2, 2, 0, 0)[1:] == ((0, 55), (0, 55))
    assert inside((8, 10, 9), (8, 5, 4), 2, 2, 2, 2, 0, 0)[1:] == ((0, 5), (0, 4))
    assert inside((8, 7, 7), (8, 7, 7), 3, 3, 1, 1, 1, 1)[1:] == ((1, 6), (1, 6))
    assert inside((8, 9, 9), (8, 4, 4), 3, 3, 2, 2, 0, 0)[0] is max_pool2d_kernel._inside_3x3_stride2_tasks
    # other geometries have no such kernel
    assert inside((8, 9, 9), (8, 3, 3), 3, 3, 3, 3, 0, 0) == (None, (0, 0), (0, 0))
    assert inside((8, 9, 9), (8, 4, 7), 3, 2, 2, 1, 0, 0) == (None, (0, 0), (0, 0))


def test_no_grad_pooling_skips_the_argmax(monkeypatch):
    """Where no graph is recorded the layer runs the kernel's `inference` (no argmax); with a
    graph it runs `forward` and can still backpropagate."""
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    calls = []
    for name in ("max_pool2d_forward", "max_pool2d_values"):
        original = getattr(max_pool2d_kernel, name)
        monkeypatch.setattr(max_pool2d_kernel, name,
                            lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    pool = tinynet.nn.MaxPool2d(3, stride=2, padding=1)
    with tinynet.no_grad():
        inferred = pool(tinynet.Tensor(x, requires_grad=True))
    assert calls == ["max_pool2d_values"] and inferred.creator is None
    calls.clear()
    pooled = pool(tinynet.Tensor(x))                 # no input needs a gradient: nothing recorded
    assert calls == ["max_pool2d_values"]
    calls.clear()
    leaf = tinynet.Tensor(x, requires_grad=True)
    trained = pool(leaf)
    assert calls == ["max_pool2d_forward"]
    trained.sum().backward()
    assert leaf.grad is not None and float(leaf.grad.data.sum()) == trained.data.size
    np.testing.assert_array_equal(inferred.data, trained.data)
    np.testing.assert_array_equal(pooled.data, trained.data)


def test_alexnet_sizes_and_floor_rounding():
    x = np.random.default_rng(0).standard_normal((2, 3, 55, 55)).astype(np.float32)
    y, _ = max_pool2d_forward(x, 3, 2)
    assert y.shape == (2, 3, 27, 27)                     # (55 - 3)/2 + 1
    assert max_pool2d_forward(y, 3, 2)[0].shape == (2, 3, 13, 13)
    assert max_pool2d_forward(np.zeros((1, 1, 13, 13)), 3, 2)[0].shape == (1, 1, 6, 6)
    # (6 - 3)/2 + 1 = 2.5: floor by default, 3 with ceil_mode
    assert max_pool2d_forward(np.zeros((1, 1, 6, 6)), 3, 2)[0].shape == (1, 1, 2, 2)
    assert max_pool2d_forward(np.zeros((1, 1, 6, 6)), 3, 2, ceil_mode=True)[0].shape == (1, 1, 3, 3)
    # stride None means stride = kernel: 7 -> floor(7/2) = 3
    assert max_pool2d_forward(np.zeros((1, 1, 7, 7)), 2)[0].shape == (1, 1, 3, 3)


def test_padding_is_never_selected():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)       # all negative: zero padding would win
    y, argmax = max_pool2d_forward(x, 3, 1, 1)
    assert (y < 0).all()
    np.testing.assert_array_equal(y, naive_max_pool2d(x, (3, 3), (1, 1), (1, 1))[0])
    assert argmax[0, 0, 0, 0] == 0 and argmax[0, 0, 2, 2] == 4


def test_input_is_not_modified_and_non_contiguous_input_works():
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 8))
    x_t = x.transpose(1, 0, 2, 3)                       # not C-contiguous
    copy = x_t.copy()
    y, argmax = max_pool2d_forward(x_t, 3, 2)
    np.testing.assert_array_equal(x_t, copy)
    y_ref, argmax_ref = naive_max_pool2d(copy, (3, 3), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)


# ----------------------------------------------------------------- backward
@settings(max_examples=25)
@given(case=pooling_cases())
def test_backward_matches_numerical_gradient(case):
    shape, kernel, stride, padding, ceil_mode, seed = case
    x = distinct_values(shape, seed)
    y, argmax = max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    grad_output = np.random.default_rng(seed + 1).standard_normal(y.shape)
    grad_input = max_pool2d_backward(grad_output, argmax, x.shape)
    numerical = numerical_gradient(lambda: max_pool2d_forward(x, kernel, stride, padding, ceil_mode)[0],
                                   x, grad_output)
    assert grad_input.dtype == np.float64
    np.testing.assert_allclose(grad_input, numerical, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_input, naive_max_pool2d_backward(grad_output, argmax, x.shape),
                               rtol=1e-12, atol=1e-12)


def test_overlapping_windows_accumulate():
    # 3x3 stride 2 (AlexNet): the centre pixel, the largest, wins all four windows
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    y, argmax = max_pool2d_forward(x, 3, 2)
    assert (argmax == 12).all()
    grad_input = max_pool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), argmax, x.shape)
    assert grad_input[0, 0, 2, 2] == 10.0 and grad_input.sum() == 10.0


# ----------------------------------------------------------------- ties and NaN
def test_ties_go_to_the_first_maximum_like_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for the tie-breaking rule")
    x = np.zeros((1, 2, 6, 7), dtype=np.float32)
    x[0, 1] = np.array([[1, 2, 2, 0, 2, 2, 1]] * 6, dtype=np.float32)    # ties along rows and columns
    x[0, 1, 3] = 2.0
    for kernel, stride, padding, ceil_mode in [(2, 1, 0, False), (3, 2, 1, True), ((3, 2), (1, 2), (1, 0), False)]:
        y, argmax = max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
        y_torch, argmax_torch = torch.nn.functional.max_pool2d(
            torch.from_numpy(x), kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y, y_torch.numpy())
        np.testing.assert_array_equal(argmax, argmax_torch.numpy())
        k, s, p = (kernel if isinstance(kernel, tuple) else (kernel, kernel),
                   stride if isinstance(stride, tuple) else (stride, stride),
                   padding if isinstance(padding, tuple) else (padding, padding))
        np.testing.assert_array_equal(argmax, naive_max_pool2d(x, k, s, p, ceil_mode)[1])
    # all equal: every window picks its top-left real pixel
    _, argmax = max_pool2d_forward(np.ones((1, 1, 4, 4)), 2, 2)
    np.testing.assert_array_equal(argmax[0, 0], [[0, 2], [8, 10]])


def test_nan_propagates_like_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for NaN handling")
    x = np.random.default_rng(2).standard_normal((1, 1, 5, 5)).astype(np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 1, 2] = np.nan
    y, argmax = max_pool2d_forward(x, 3, 1)
    y_torch, argmax_torch = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 1, return_indices=True)
    np.testing.assert_array_equal(y, y_torch.numpy())   # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(argmax, argmax_torch.numpy())


# ----------------------------------------------------------------- PyTorch oracle
@settings(max_examples=30)
@given(case=pooling_cases(max_batch=3, max_channels=4, max_extra=12))
def test_forward_and_backward_match_torch(case):
    torch = pytest.importorskip("torch", reason="PyTorch is the test oracle")
    shape, kernel, stride, padding, ceil_mode, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y, argmax = max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    grad_output = rng.standard_normal(y.shape).astype(np.float32)
    grad_input = max_pool2d_backward(grad_output, argmax, x.shape)

    x_torch = torch.from_numpy(x).requires_grad_()
    y_torch, argmax_torch = torch.nn.functional.max_pool2d(x_torch, kernel, stride, padding,
                                                           ceil_mode=ceil_mode, return_indices=True)
    y_torch.backward(torch.from_numpy(grad_output))
    np.testing.assert_array_equal(y, y_torch.detach().numpy())
    np.testing.assert_array_equal(argmax, argmax_torch.numpy())
    assert grad_input.dtype == np.float32
    np.testing.assert_allclose(grad_input, x_torch.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_alexnet_pool_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is the test oracle")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 55, 55)).astype(np.float32)
    y, argmax = max_pool2d_forward(x, 3, 2)
    grad_output = rng.standard_normal(y.shape).astype(np.float32)
    x_torch = torch.from_numpy(x).requires_grad_()
    y_torch = torch.nn.functional.max_pool2d(x_torch, 3, 2)
    y_torch.backward(torch.from_numpy(grad_output))
    np.testing.assert_array_equal(y, y_torch.detach().numpy())
    np.testing.assert_allclose(max_pool2d_backward(grad_output, argmax, x.shape), x_torch.grad.numpy(),
                               rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- GPU path (simulated)
GPU_CASES = [  # tiny: the simulator costs ~0.1-0.5 ms per thread
    ((1, 2, 7, 7), 3, 2, 0, False),
    ((2, 1, 6, 5), 3, 2, 1, True),
    ((1, 2, 5, 6), (2, 3), (3, 1), (1, 1), False),
    ((1, 1, 4, 4), 4, None, 0, False),                  # kernel = whole input
]


@pytest.mark.parametrize("shape,kernel,stride,padding,ceil_mode", GPU_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_path_matches_cpu(gpu_xp, shape, kernel, stride, padding, ceil_mode, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, 0, :2] = x[0, 0, 0, 2]                      # a tie, resolved the same way on both paths
    y, argmax = max_pool2d_forward(x, kernel, stride, padding, ceil_mode)
    x_gpu = gpu_xp.asarray(x)
    y_gpu, argmax_gpu = max_pool2d_forward(x_gpu, kernel, stride, padding, ceil_mode)
    assert isinstance(y_gpu, gpu_xp.ndarray) and isinstance(argmax_gpu, gpu_xp.ndarray)
    assert y_gpu.dtype == dtype
    np.testing.assert_array_equal(gpu_xp.asnumpy(y_gpu), y)
    np.testing.assert_array_equal(gpu_xp.asnumpy(argmax_gpu), argmax)
    values_gpu = max_pool2d_values(x_gpu, kernel, stride, padding, ceil_mode)
    assert isinstance(values_gpu, gpu_xp.ndarray) and values_gpu.dtype == dtype
    np.testing.assert_array_equal(gpu_xp.asnumpy(values_gpu), y)

    grad_output = rng.standard_normal(y.shape).astype(dtype)
    grad_input = max_pool2d_backward(grad_output, argmax, shape)
    grad_output_gpu = gpu_xp.asarray(grad_output)
    # deterministic gather (with the geometry) and atomic scatter (without it)
    gathered = max_pool2d_backward(grad_output_gpu, argmax_gpu, shape, kernel, stride, padding)
    scattered = max_pool2d_backward(grad_output_gpu, argmax_gpu, shape)
    assert isinstance(gathered, gpu_xp.ndarray) and isinstance(scattered, gpu_xp.ndarray)
    np.testing.assert_array_equal(gpu_xp.asnumpy(gathered), grad_input)
    np.testing.assert_allclose(gpu_xp.asnumpy(scattered), grad_input, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- errors
def test_errors_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"max_pool2d: expected a 4-D input .*got shape \(3, 8, 8\)"):
        max_pool2d_forward(np.zeros((3, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel \(5, 5\).*larger than the padded input \(4, 4\)"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4)), 5)
    with pytest.raises(ValueError, match=r"max_pool2d: padding must be at most half the kernel size, "
                                         r"got padding \(2, 2\) for kernel_size \(3, 3\)"):
        max_pool2d_forward(np.zeros((1, 1, 8, 8)), 3, 1, 2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size and stride must be positive"):
        max_pool2d_forward(np.zeros((1, 1, 8, 8)), 3, 0)
    with pytest.raises(ValueError, match=r"max_pool2d: expected a floating-point input"):
        max_pool2d_forward(np.zeros((1, 1, 8, 8), dtype=np.int64), 2)
    y, argmax = max_pool2d_forward(np.zeros((1, 1, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: grad_output \(1, 1, 3, 3\) and argmax \(1, 1, 4, 4\)"):
        max_pool2d_backward(np.zeros((1, 1, 3, 3)), argmax, (1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: expected a 4-D grad_output"):
        max_pool2d_backward(y[0], argmax, (1, 1, 8, 8))
