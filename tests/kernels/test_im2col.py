"""Tests of im2col / col2im: the textbook definition, the adjoint property, the GPU path."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.backend import to_numpy
from tinynet.kernels.im2col import col2im, columns_shape, im2col, im2col_into


# ------------------------------------------------------------------ references
def output_length(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def reference_im2col(x, kernel, stride, padding, dilation):
    """The definition, one entry at a time:
    cols[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside).
    """
    batch, channels, height, width = x.shape
    out_h = output_length(height, kernel[0], stride[0], padding[0], dilation[0])
    out_w = output_length(width, kernel[1], stride[1], padding[1], dilation[1])
    cols = np.zeros((channels * kernel[0] * kernel[1], batch * out_h * out_w), dtype=x.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    for oh in range(out_h):
                        for ow in range(out_w):
                            h = oh * stride[0] - padding[0] + i * dilation[0]
                            w = ow * stride[1] - padding[1] + j * dilation[1]
                            if 0 <= h < height and 0 <= w < width:
                                cols[(c * kernel[0] + i) * kernel[1] + j,
                                     (n * out_h + oh) * out_w + ow] = x[n, c, h, w]
    return cols


def reference_col2im(cols, input_shape, kernel, stride, padding, dilation):
    """Every column entry added back onto the pixel it was copied from (padding entries dropped)."""
    batch, channels, height, width = input_shape
    out_h = output_length(height, kernel[0], stride[0], padding[0], dilation[0])
    out_w = output_length(width, kernel[1], stride[1], padding[1], dilation[1])
    image = np.zeros(input_shape, dtype=cols.dtype)
    for n in range(batch):
        for c in range(channels):
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    for oh in range(out_h):
                        for ow in range(out_w):
                            h = oh * stride[0] - padding[0] + i * dilation[0]
                            w = ow * stride[1] - padding[1] + j * dilation[1]
                            if 0 <= h < height and 0 <= w < width:
                                image[n, c, h, w] += cols[(c * kernel[0] + i) * kernel[1] + j,
                                                          (n * out_h + oh) * out_w + ow]
    return image


# ------------------------------------------------------------------ drawn configurations
@st.composite
def window_configs(draw, max_batch=3, max_channels=3):
    """(input shape, kernel, stride, padding, dilation) whose window fits the padded input.

    Covers a kernel as large as the whole input, strides larger than the kernel,
    padding wider than half the kernel, dilation, odd sizes and batch 1.
    """
    batch = draw(st.integers(1, max_batch))
    channels = draw(st.integers(1, max_channels))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if draw(st.booleans()):             # the kernel covers the whole (unpadded) input
        padding, dilation = (0, 0), (1, 1)
        height, width = kernel
    else:
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        smallest = [max(1, dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a]) for a in range(2)]
        height = draw(st.integers(smallest[0], smallest[0] + 4))
        width = draw(st.integers(smallest[1], smallest[1] + 4))
    return (batch, channels, height, width), kernel, stride, padding, dilation


# ------------------------------------------------------------------ CPU path
@settings(max_examples=60)
@given(window_configs(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31 - 1))
def test_im2col_matches_definition(config, dtype, seed):
    shape, kernel, stride, padding, dilation = config
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    cols = im2col(x, kernel, stride, padding, dilation)
    assert cols.dtype == dtype
    assert cols.shape == columns_shape(shape, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(cols, reference_im2col(x, kernel, stride, padding, dilation))


@settings(max_examples=60)
@given(window_configs(), st.integers(0, 2**31 - 1))
def test_col2im_matches_definition(config, seed):
    shape, kernel, stride, padding, dilation = config
    rng = np.random.default_rng(seed)
    cols = rng.standard_normal(columns_shape(shape, kernel, stride, padding, dilation))
    image = col2im(cols, shape, kernel, stride, padding, dilation)
    assert image.shape == shape and image.dtype == np.float64
    expected = reference_col2im(cols, shape, kernel, stride, padding, dilation)
    np.testing.assert_allclose(image, expected, rtol=1e-12, atol=1e-12)
    # into an ``out`` full of NaN: every pixel is written, those no window reads (past the last
    # window, when the stride skips the input's last rows or columns) with 0
    out = np.full(shape, np.nan)
    assert col2im(cols, shape, kernel, stride, padding, dilation, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=30)
@given(st.integers(1, 70), st.integers(1, 5), st.integers(1, 2), st.integers(0, 2),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31 - 1))
def test_im2col_and_col2im_on_rows_wider_than_a_vector(width, kernel, stride, padding, dtype, seed):
    """Rows of up to 70 pixels: the stride-1 copies run as SIMD loops with a vector body and a
    remainder, which the short rows of ``window_configs`` never reach."""
    shape = (2, 2, 4, max(width, kernel - 2 * padding))
    window = ((3, kernel), (1, stride), (1, padding), (1, 1))     # rows of padding above and below
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(im2col(x, *window), reference_im2col(x, *window))
    cols = rng.standard_normal(columns_shape(shape, *window)).astype(dtype)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(col2im(cols, shape, *window), reference_col2im(cols, shape, *window),
                               rtol=tolerance, atol=tolerance)


@settings(max_examples=60)
@given(window_configs(), st.integers(0, 2**31 - 1))
def test_col2im_is_the_adjoint_of_im2col(config, seed):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    shape, kernel, stride, padding, dilation = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    c = rng.standard_normal(columns_shape(shape, kernel, stride, padding, dilation))
    left = np.sum(im2col(x, kernel, stride, padding, dilation) * c)
    right = np.sum(x * col2im(c, shape, kernel, stride, padding, dilation))
    assert left == pytest.approx(right, rel=1e-12, abs=1e-12)


def test_col2im_of_ones_counts_the_windows_of_each_pixel():
    """col2im(im2col(x)) is not the inverse: each pixel is multiplied by its number of windows."""
    x = np.ones((1, 1, 4, 4))
    image = col2im(im2col(x, 3, 1, 0), x.shape, 3, 1, 0)
    counts = np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], dtype=float)
    np.testing.assert_array_equal(image[0, 0], counts)


def test_im2col_into_reuses_the_buffer_and_accepts_non_contiguous_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 7, 6)).astype(np.float32)[:, :, ::-1, :]   # a strided view
    buffer = np.full(columns_shape(x.shape, 3, 2, 1), np.nan, dtype=np.float32)
    result = im2col_into(x, buffer, 3, 2, 1)
    assert result is buffer
    np.testing.assert_array_equal(buffer, reference_im2col(np.ascontiguousarray(x), (3, 3), (2, 2), (1, 1), (1, 1)))


def test_alexnet_conv1_geometry():
    x = np.zeros((2, 3, 227, 227), dtype=np.float32)
    cols = im2col(x, 11, 4, 0)
    assert cols.shape == (3 * 11 * 11, 2 * 55 * 55) and cols.dtype == np.float32


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_value_errors_naming_the_problem():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"im2col: expected a 4-D input .* got shape \(2, 5, 5\)"):
        im2col(x[0], 3, 1, 0)
    with pytest.raises(ValueError, match=r"im2col: kernel \(8, 8\) .* larger than the padded input \(7, 7\)"):
        im2col(x, 8, 1, 1)
    with pytest.raises(ValueError, match=r"im2col: kernel \(3, 3\) \(spanning \(7, 7\)\) is larger than the padded input \(5, 5\)"):
        im2col(x, 3, 1, 0, dilation=3)
    with pytest.raises(ValueError, match=r"im2col: kernel_size, stride and dilation must be >= 1"):
        im2col(x, 3, 0, 0)
    with pytest.raises(ValueError, match=r"im2col: .*padding >= 0"):
        im2col(x, 3, 1, -1)
    with pytest.raises(ValueError, match=r"im2col: expected a floating-point input .* got dtype int64"):
        im2col(x.astype(np.int64), 3, 1, 0)
    with pytest.raises(ValueError, match=r"im2col: expected a C-contiguous output buffer of shape \(18, 9\)"):
        im2col_into(x, np.zeros((18, 10)), 3, 1, 0)
    with pytest.raises(ValueError, match=r"im2col: expected a C-contiguous output buffer .* dtype float64"):
        im2col_into(x, np.zeros((18, 9), dtype=np.float32), 3, 1, 0)
    with pytest.raises(ValueError, match=r"col2im: expected a column matrix of shape \(C\*kh\*kw, N\*OH\*OW\) "
                                         r"= \(18, 9\) .* got shape \(18, 8\)"):
        col2im(np.zeros((18, 8)), x.shape, 3, 1, 0)
    with pytest.raises(ValueError, match=r"col2im: expected a 4-D input_shape"):
        col2im(np.zeros((18, 9)), (2, 5, 5), 3, 1, 0)
    with pytest.raises(ValueError, match=r"kernel_size must be an int or a pair"):
        im2col(x, (3, 3, 3), 1, 0)


# ------------------------------------------------------------------ GPU path (simulated)
GPU_CASES = [  # tiny: a few hundred simulated threads per launch
    ((1, 2, 5, 4), (3, 2), (1, 1), (1, 0), (1, 1)),
    ((2, 1, 5, 5), (2, 2), (3, 3), (0, 0), (1, 1)),     # stride > kernel
    ((1, 2, 6, 5), (2, 3), (2, 1), (2, 1), (2, 1)),     # dilation, padding > kernel/2
    ((2, 1, 3, 3), (3, 3), (1, 1), (0, 0), (1, 1)),     # kernel == whole input
]


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", GPU_CASES)
def test_gpu_path_matches_cpu_path(gpu_xp, shape, kernel, stride, padding, dilation):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    cols_cpu = im2col(x, kernel, stride, padding, dilation)
    cols_gpu = im2col(gpu_xp.asarray(x), kernel, stride, padding, dilation)
    assert isinstance(cols_gpu, gpu_xp.ndarray) and cols_gpu.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(cols_gpu), cols_cpu)

    c = rng.standard_normal(cols_cpu.shape).astype(np.float32)
    image_cpu = col2im(c, shape, kernel, stride, padding, dilation)
    image_gpu = col2im(gpu_xp.asarray(c), shape, kernel, stride, padding, dilation)
    assert isinstance(image_gpu, gpu_xp.ndarray) and image_gpu.dtype == np.float32
    np.testing.assert_allclose(to_numpy(image_gpu), image_cpu, rtol=1e-6, atol=1e-6)
