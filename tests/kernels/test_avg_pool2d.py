"""Tests of kernels/avg_pool2d.py (average and adaptive average pooling)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.gradcheck import numerical_gradient
from tinynet.kernels.adaptive_avg_pool2d import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward
from tinynet.kernels.avg_pool2d import avg_pool2d_backward, avg_pool2d_forward


# ----------------------------------------------------------------- the textbook definitions
def naive_output_size(size, kernel, stride, padding, ceil_mode):
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # last window must start inside
        out -= 1
    return out


def naive_windows(input_shape, kernel, stride, padding, ceil_mode, count_include_pad):
    """Yield (oh, ow, real pixels [(h, w), ...], divisor) for every window."""
    height, width = input_shape[2:]
    out_h = naive_output_size(height, kernel[0], stride[0], padding[0], ceil_mode)
    out_w = naive_output_size(width, kernel[1], stride[1], padding[1], ceil_mode)
    for oh in range(out_h):
        for ow in range(out_w):
            pixels, cells_in_padded_input = [], 0
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    h = oh * stride[0] - padding[0] + i
                    w = ow * stride[1] - padding[1] + j
                    if -padding[0] <= h < height + padding[0] and -padding[1] <= w < width + padding[1]:
                        cells_in_padded_input += 1
                    if 0 <= h < height and 0 <= w < width:
                        pixels.append((h, w))
            yield oh, ow, pixels, (cells_in_padded_input if count_include_pad else len(pixels))


def naive_output_shape(input_shape, kernel, stride, padding, ceil_mode):
    return input_shape[:2] + tuple(naive_output_size(input_shape[2 + a], kernel[a], stride[a], padding[a], ceil_mode)
                                   for a in range(2))


def naive_avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad):
    y = np.zeros(naive_output_shape(x.shape, kernel, stride, padding, ceil_mode), dtype=np.float64)
    for oh, ow, pixels, divisor in naive_windows(x.shape, kernel, stride, padding, ceil_mode, count_include_pad):
        for h, w in pixels:
            y[:, :, oh, ow] += x[:, :, h, w]
        y[:, :, oh, ow] /= divisor
    return y


def naive_avg_pool2d_backward(grad_output, input_shape, kernel, stride, padding, ceil_mode, count_include_pad):
    grad_input = np.zeros(input_shape, dtype=np.float64)
    for oh, ow, pixels, divisor in naive_windows(input_shape, kernel, stride, padding, ceil_mode,
                                                 count_include_pad):
        for h, w in pixels:
            grad_input[:, :, h, w] += grad_output[:, :, oh, ow] / divisor
    return grad_input


def naive_bins(size, out_size):
    return [(math.floor(i * size / out_size), math.ceil((i + 1) * size / out_size)) for i in range(out_size)]


def naive_adaptive_avg_pool2d(x, out_size):
    rows, columns = naive_bins(x.shape[2], out_size[0]), naive_bins(x.shape[3], out_size[1])
    y = np.zeros(x.shape[:2] + tuple(out_size))
    for oh, (h0, h1) in enumerate(rows):
        for ow, (w0, w1) in enumerate(columns):
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def naive_adaptive_avg_pool2d_backward(grad_output, input_shape):
    rows = naive_bins(input_shape[2], grad_output.shape[2])
    columns = naive_bins(input_shape[3], grad_output.shape[3])
    grad_input = np.zeros(input_shape)
    for oh, (h0, h1) in enumerate(rows):
        for ow, (w0, w1) in enumerate(columns):
            area = (h1 - h0) * (w1 - w0)
            grad_input[:, :, h0:h1, w0:w1] += grad_output[:, :, oh, ow][:, :, None, None] / area
    return grad_input


# ----------------------------------------------------------------- strategies
@st.composite
def pooling_cases(draw, max_batch=2, max_channels=3, max_extra=8):
    """(shape, kernel, stride, padding, ceil_mode, count_include_pad, seed) that PyTorch accepts."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), kernel[0] - 2 * padding[0] + max_extra))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), kernel[1] - 2 * padding[1] + max_extra))
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), height, width)
    return (shape, kernel, stride, padding, draw(st.booleans()), draw(st.booleans()),
            draw(st.integers(0, 2**32 - 1)))


@st.composite
def adaptive_cases(draw, max_size=12):
    """(shape, output_size, seed); output sizes may exceed the input (bins repeat rows)."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    output = (draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    return shape, output, draw(st.integers(0, 2**32 - 1))


# ----------------------------------------------------------------- average pooling
@settings(max_examples=40)
@given(case=pooling_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_avg_forward_matches_naive_loops(case, dtype):
    shape, kernel, stride, padding, ceil_mode, count_include_pad, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y = avg_pool2d_forward(x, kernel, stride, padding, ceil_mode, count_include_pad)
    y_ref = naive_avg_pool2d(x.astype(np.float64), kernel, stride, padding, ceil_mode, count_include_pad)
    assert y.dtype == dtype and y.shape == y_ref.shape
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, y_ref, rtol=tolerance, atol=tolerance)


@settings(max_examples=25)
@given(case=pooling_cases())
def test_avg_backward_matches_numerical_gradient(case):
    shape, kernel, stride, padding, ceil_mode, count_include_pad, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    arguments = (kernel, stride, padding, ceil_mode, count_include_pad)
    y = avg_pool2d_forward(x, *arguments)
    grad_output = rng.standard_normal(y.shape)
    grad_input = avg_pool2d_backward(grad_output, x.shape, *arguments)
    numerical = numerical_gradient(lambda: avg_pool2d_forward(x, *arguments), x, grad_output)
    assert grad_input.dtype == np.float64
    np.testing.assert_allclose(grad_input, numerical, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_input, naive_avg_pool2d_backward(grad_output, x.shape, *arguments),
                               rtol=1e-12, atol=1e-12)


def test_avg_output_sizes_round_down_by_default():
    assert avg_pool2d_forward(np.zeros((1, 1, 55, 55)), 3, 2).shape == (1, 1, 27, 27)   # (55-3)/2+1
    assert avg_pool2d_forward(np.zeros((1, 1, 6, 6)), 3, 2).shape == (1, 1, 2, 2)       # 2.5 -> 2
    assert avg_pool2d_forward(np.zeros((1, 1, 6, 6)), 3, 2, ceil_mode=True).shape == (1, 1, 3, 3)
    assert avg_pool2d_forward(np.zeros((1, 1, 7, 5)), 2).shape == (1, 1, 3, 2)           # stride = kernel


def test_count_include_pad_changes_the_divisor():
    x = np.ones((1, 1, 2, 2))
    # 3x3 window centred on the corner pixel: 4 real ones out of 9 cells
    np.testing.assert_allclose(avg_pool2d_forward(x, 3, 1, 1, count_include_pad=True)[0, 0, 0, 0], 4 / 9)
    np.testing.assert_allclose(avg_pool2d_forward(x, 3, 1, 1, count_include_pad=False)[0, 0, 0, 0], 1.0)


@settings(max_examples=30)
@given(case=pooling_cases(max_batch=3, max_channels=4, max_extra=12))
def test_avg_forward_and_backward_match_torch(case):
    torch = pytest.importorskip("torch", reason="PyTorch is the test oracle")
    shape, kernel, stride, padding, ceil_mode, count_include_pad, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    arguments = (kernel, stride, padding, ceil_mode, count_include_pad)
    y = avg_pool2d_forward(x, *arguments)
    grad_output = rng.standard_normal(y.shape).astype(np.float32)
    grad_input = avg_pool2d_backward(grad_output, x.shape, *arguments)

    x_torch = torch.from_numpy(x).requires_grad_()
    y_torch = torch.nn.functional.avg_pool2d(x_torch, *arguments)
    y_torch.backward(torch.from_numpy(grad_output))
    assert y.dtype == np.float32 and grad_input.dtype == np.float32
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_input, x_torch.grad.numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- adaptive average pooling
@settings(max_examples=40)
@given(case=adaptive_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_adaptive_forward_matches_naive_loops(case, dtype):
    shape, output, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y = adaptive_avg_pool2d_forward(x, output)
    assert y.dtype == dtype and y.shape == shape[:2] + output
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, naive_adaptive_avg_pool2d(x.astype(np.float64), output),
                               rtol=tolerance, atol=tolerance)


@settings(max_examples=25)
@given(case=adaptive_cases(max_size=9))
def test_adaptive_backward_matches_numerical_gradient(case):
    shape, output, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    grad_output = rng.standard_normal(shape[:2] + output)
    grad_input = adaptive_avg_pool2d_backward(grad_output, x.shape)
    numerical = numerical_gradient(lambda: adaptive_avg_pool2d_forward(x, output), x, grad_output)
    np.testing.assert_allclose(grad_input, numerical, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(grad_input, naive_adaptive_avg_pool2d_backward(grad_output, x.shape),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 3])
def test_adaptive_split_into_ranges_matches_naive_loops(threads, monkeypatch):
    """The passes take ranges of at least ``ELEMENTWISE_GRAIN`` input elements; with the grain
    made small, 2x5 planes split into ranges of one or two, each pooling its own planes."""
    from tinynet import backend
    from tinynet.kernels import _numba
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 5, 9, 7))
    grad_output = rng.standard_normal((2, 5, 4, 3))
    previous = backend.get_num_threads()
    monkeypatch.setattr(_numba, "ELEMENTWISE_GRAIN", 100)
    backend.set_num_threads(threads)
    try:
        y = adaptive_avg_pool2d_forward(x, (4, 3))
        grad_input = adaptive_avg_pool2d_backward(grad_output, x.shape)
    finally:
        backend.set_num_threads(previous)
    np.testing.assert_allclose(y, naive_adaptive_avg_pool2d(x, (4, 3)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_input, naive_adaptive_avg_pool2d_backward(grad_output, x.shape),
                               rtol=1e-12, atol=1e-12)


def test_adaptive_bins_follow_pytorch():
    # 13 -> 6: bins of 3 rows starting at 0, 2, 4, 6, 8, 10 (neighbours overlap by one row)
    x = np.arange(13.0).reshape(1, 1, 13, 1)
    np.testing.assert_allclose(adaptive_avg_pool2d_forward(x, (6, 1))[0, 0, :, 0], [1, 3, 5, 7, 9, 11])
    # 5 -> 6: [0,1) [0,2) [1,3) [2,4) [3,5) [4,5)
    x = np.arange(5.0).reshape(1, 1, 5, 1)
    np.testing.assert_allclose(adaptive_avg_pool2d_forward(x, (6, 1))[0, 0, :, 0], [0, 0.5, 1.5, 2.5, 3.5, 4])
    # None keeps the input size; an int means a square output
    assert adaptive_avg_pool2d_forward(np.zeros((1, 1, 7, 5)), (None, 2)).shape == (1, 1, 7, 2)
    assert adaptive_avg_pool2d_forward(np.zeros((1, 1, 7, 5)), 3).shape == (1, 1, 3, 3)


@pytest.mark.parametrize("input_size,output_size", [
    ((13, 13), 6), ((5, 5), 6), ((6, 6), 6), ((13, 13), 1), ((7, 9), (3, 5)), ((4, 11), (9, 2))])
def test_adaptive_matches_torch_at_fixed_sizes(input_size, output_size):
    torch = pytest.importorskip("torch", reason="PyTorch is the test oracle")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4) + input_size).astype(np.float32)
    y = adaptive_avg_pool2d_forward(x, output_size)
    grad_output = rng.standard_normal(y.shape).astype(np.float32)
    x_torch = torch.from_numpy(x).requires_grad_()
    y_torch = torch.nn.functional.adaptive_avg_pool2d(x_torch, output_size)
    y_torch.backward(torch.from_numpy(grad_output))
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(adaptive_avg_pool2d_backward(grad_output, x.shape), x_torch.grad.numpy(),
                               rtol=1e-6, atol=1e-6)


@settings(max_examples=25)
@given(case=adaptive_cases(max_size=16))
def test_adaptive_matches_torch(case):
    torch = pytest.importorskip("torch", reason="PyTorch is the test oracle")
    shape, output, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y = adaptive_avg_pool2d_forward(x, output)
    grad_output = rng.standard_normal(y.shape).astype(np.float32)
    x_torch = torch.from_numpy(x).requires_grad_()
    y_torch = torch.nn.functional.adaptive_avg_pool2d(x_torch, output)
    y_torch.backward(torch.from_numpy(grad_output))
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(adaptive_avg_pool2d_backward(grad_output, x.shape), x_torch.grad.numpy(),
                               rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- GPU path (simulated)
GPU_CASES = [  # tiny: the simulator costs ~0.1-0.5 ms per thread
    ((1, 2, 7, 7), 3, 2, 0, False, True),
    ((2, 1, 6, 5), 3, 2, 1, True, True),
    ((2, 1, 6, 5), 3, 2, 1, True, False),
    ((1, 2, 5, 6), (2, 3), (3, 1), (1, 1), False, False),
    ((1, 1, 4, 4), 4, None, 0, False, True),            # kernel = whole input
]


@pytest.mark.parametrize("shape,kernel,stride,padding,ceil_mode,count_include_pad", GPU_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_gpu_path_matches_cpu(gpu_xp, shape, kernel, stride, padding, ceil_mode, count_include_pad, dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(dtype)
    arguments = (kernel, stride, padding, ceil_mode, count_include_pad)
    y = avg_pool2d_forward(x, *arguments)
    y_gpu = avg_pool2d_forward(gpu_xp.asarray(x), *arguments)
    assert isinstance(y_gpu, gpu_xp.ndarray) and y_gpu.dtype == dtype
    np.testing.assert_allclose(gpu_xp.asnumpy(y_gpu), y, rtol=1e-6, atol=1e-7)
    grad_output = rng.standard_normal(y.shape).astype(dtype)
    grad_input = avg_pool2d_backward(grad_output, shape, *arguments)
    grad_input_gpu = avg_pool2d_backward(gpu_xp.asarray(grad_output), shape, *arguments)
    assert isinstance(grad_input_gpu, gpu_xp.ndarray) and grad_input_gpu.dtype == dtype
    np.testing.assert_allclose(gpu_xp.asnumpy(grad_input_gpu), grad_input, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape,output_size", [
    ((1, 2, 13, 13), 6), ((1, 2, 5, 5), 6), ((2, 1, 7, 4), (3, 5)), ((1, 1, 9, 9), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_gpu_path_matches_cpu(gpu_xp, shape, output_size, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    y = adaptive_avg_pool2d_forward(x, output_size)
    y_gpu = adaptive_avg_pool2d_forward(gpu_xp.asarray(x), output_size)
    assert isinstance(y_gpu, gpu_xp.ndarray) and y_gpu.dtype == dtype
    np.testing.assert_allclose(gpu_xp.asnumpy(y_gpu), y, rtol=1e-6, atol=1e-7)
    grad_output = rng.standard_normal(y.shape).astype(dtype)
    grad_input = adaptive_avg_pool2d_backward(grad_output, shape)
    grad_input_gpu = adaptive_avg_pool2d_backward(gpu_xp.asarray(grad_output), shape)
    assert isinstance(grad_input_gpu, gpu_xp.ndarray) and grad_input_gpu.dtype == dtype
    np.testing.assert_allclose(gpu_xp.asnumpy(grad_input_gpu), grad_input, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------- errors
def test_errors_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"avg_pool2d: expected a 4-D input .*got shape \(8, 8\)"):
        avg_pool2d_forward(np.zeros((8, 8)), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: kernel \(3, 6\).*larger than the padded input \(6, 5\)"):
        avg_pool2d_forward(np.zeros((1, 1, 4, 3)), (3, 6), padding=1)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding must be at most half the kernel size, "
                                         r"got padding \(1, 1\) for kernel_size \(1, 1\)"):
        avg_pool2d_forward(np.zeros((1, 1, 8, 8)), 1, 1, 1)
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: expected grad_output of shape \(1, 1, 4, 4\), "
                                         r"got shape \(1, 1, 3, 3\)"):
        avg_pool2d_backward(np.zeros((1, 1, 3, 3)), (1, 1, 8, 8), 2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected a 4-D input .*got shape \(1, 8, 8\)"):
        adaptive_avg_pool2d_forward(np.zeros((1, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be positive, got \(0, 2\)"):
        adaptive_avg_pool2d_forward(np.zeros((1, 1, 8, 8)), (0, 2))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected a floating-point input"):
        adaptive_avg_pool2d_forward(np.zeros((1, 1, 8, 8), dtype=np.int32), 2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: expected grad_output of shape "
                                         r"\(2, 1, 3, 3\), got shape \(1, 1, 3, 3\)"):
        adaptive_avg_pool2d_backward(np.zeros((1, 1, 3, 3)), (2, 1, 8, 8))
