"""2-D average pooling over fixed windows: forward, backward, CPU and GPU.

(Adaptive average pooling, which asks for an output size instead, is ``adaptive_avg_pool2d.py``.)

Average pooling
---------------
Input ``x`` of shape (N, C, H, W), window ``kernel = (KH, KW)``, ``stride = (SH, SW)``
(default: the kernel size), ``padding = (PH, PW)`` zero rows/columns on each side.
Output pixel (oh, ow) averages the window whose top-left corner is at
``(oh*SH - PH, ow*SW - PW)``:

    y[n, c, oh, ow] = (1 / D[oh, ow]) * sum over the real pixels (h, w) of the window of x[n, c, h, w]

Padding contributes zeros to the sum; what it does to the divisor D is the choice
``count_include_pad``:

* True (the default, as in PyTorch): D counts the padding too, D = (window rows
  inside the *padded* input) * (window columns inside the padded input), which
  is KH*KW except for ``ceil_mode`` windows that run past the padded border.
* False: D counts real pixels only, D = (window rows inside the input) * (columns).

The output size is the same as max pooling's,
``OH = floor((H + 2*PH - KH) / SH) + 1`` (``ceil_mode`` rounds up, but the last
window must start inside the input or its left padding), e.g. a 3x3 stride-2
pool takes 55 -> (55 - 3)/2 + 1 = 27.  As in PyTorch, padding may be at most
half the kernel and the window must fit in the padded input.

Backward: y[oh, ow] is linear in x with dy[oh, ow]/dx[h, w] = 1/D[oh, ow] when
(h, w) is a real pixel of window (oh, ow), else 0.  Hence

    dL/dx[n, c, h, w] = sum over the windows (oh, ow) containing (h, w) of dL/dy[n, c, oh, ow] / D[oh, ow]

each output gradient is spread evenly (divided by D, the same divisor as the
forward) over the real pixels of its window, and overlapping windows add up.

Implementation
--------------
Sums run in the input's dtype (float32 stays float32, as in PyTorch), then are
divided by D.  CPU: numba, one task per (n, c) plane (``_numba.parallel_tasks``); the backward
scatters each output gradient into its own plane serially, so overlapping
windows never race.  GPU: numba.cuda, the forward runs one thread per output,
the backward one thread per *input* pixel that gathers the gradients of the
windows (bins) covering it -- no atomics, deterministic, and the same
row-major order of additions as the CPU, so both give the same bits.
"""
from tinynet.backend import get_array_module

from . import _recycled
from ._checks import as_planes, check_4d, check_floating, check_grad_output, checked_input_shape
from ._numba import cuda, njit, parallel_tasks
from ._paths import device_paths, one_thread_per_element
from .geometry import window


# ----------------------------------------------------------------- window arithmetic
@njit(inline="always", cache=True)
def _window(index, stride, padding, kernel, size, count_include_pad):
    """Rows [start, end) of input covered by window ``index`` and its divisor factor.

    The factor is the window's length inside the padded input (count_include_pad)
    or inside the real input; D is the product of the row and column factors.
    """
    start = index * stride - padding
    end = min(start + kernel, size + padding)
    padded_length = end - start
    start = max(start, 0)
    end = min(end, size)
    return start, end, (padded_length if count_include_pad else end - start)


# ----------------------------------------------------------------- CPU kernels
@njit(cache=True, nogil=True)
def _avg_forward_tasks(x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad,
                       first, last):
    planes, height, width = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for plane in range(first, last):
        for oh in range(out_h):
            h_start, h_end, factor_h = _window(oh, stride_h, pad_h, kernel_h, height, count_include_pad)
            for ow in range(out_w):
                w_start, w_end, factor_w = _window(ow, stride_w, pad_w, kernel_w, width, count_include_pad)
                total = x.dtype.type(0)  # a literal 0.0 would turn float32 sums into float64
                for h in range(h_start, h_end):
                    for w in range(w_start, w_end):
                        total += x[plane, h, w]
                y[plane, oh, ow] = total / x.dtype.type(factor_h * factor_w)


def _avg_forward_cpu(x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad):
    parallel_tasks(_avg_forward_tasks, x.shape[0], x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                   pad_w, count_include_pad)


@njit(cache=True, nogil=True)
def _avg_backward_tasks(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                      count_include_pad, first, last):
    planes, height, width = grad_input.shape
    out_h, out_w = grad_output.shape[1], grad_output.shape[2]
    for plane in range(first, last):
        # serial inside the plane: overlapping windows add into the same pixels
        for oh in range(out_h):
            h_start, h_end, factor_h = _window(oh, stride_h, pad_h, kernel_h, height, count_include_pad)
            for ow in range(out_w):
                w_start, w_end, factor_w = _window(ow, stride_w, pad_w, kernel_w, width, count_include_pad)
                share = grad_output[plane, oh, ow] / grad_output.dtype.type(factor_h * factor_w)
                for h in range(h_start, h_end):
                    for w in range(w_start, w_end):
                        grad_input[plane, h, w] += share


def _avg_backward_cpu(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                      count_include_pad):
    parallel_tasks(_avg_backward_tasks, grad_input.shape[0], grad_output, grad_input, kernel_h, kernel_w,
                   stride_h, stride_w, pad_h, pad_w, count_include_pad)


# ----------------------------------------------------------------- GPU kernels
# The window arithmetic of _window is written out inline here, with
# min/max as conditional expressions: in numba 0.68 device functions and the
# min/max builtins ask the CUDA driver for the device's compute capability while
# compiling, which breaks compiling to PTX on a machine without a GPU.
@cuda.jit
def _avg_forward_gpu(x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad):
    """One thread per output element."""
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = y.shape[1], y.shape[2]
    index = cuda.grid(1)
    if index >= y.shape[0] * out_h * out_w:
        return
    ow = index % out_w
    oh = (index // out_w) % out_h
    plane = index // (out_w * out_h)
    h_start = oh * stride_h - pad_h
    h_end = h_start + kernel_h if h_start + kernel_h < height + pad_h else height + pad_h
    padded_h = h_end - h_start
    h_start = h_start if h_start > 0 else 0
    h_end = h_end if h_end < height else height
    w_start = ow * stride_w - pad_w
    w_end = w_start + kernel_w if w_start + kernel_w < width + pad_w else width + pad_w
    padded_w = w_end - w_start
    w_start = w_start if w_start > 0 else 0
    w_end = w_end if w_end < width else width
    divisor = padded_h * padded_w if count_include_pad else (h_end - h_start) * (w_end - w_start)
    total = x.dtype.type(0)
    for h in range(h_start, h_end):
        for w in range(w_start, w_end):
            total += x[plane, h, w]
    y[plane, oh, ow] = total / x.dtype.type(divisor)


@cuda.jit
def _avg_backward_gpu(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                      count_include_pad):
    """One thread per input pixel, gathering from the windows that cover it."""
    height, width = grad_input.shape[1], grad_input.shape[2]
    out_h, out_w = grad_output.shape[1], grad_output.shape[2]
    index = cuda.grid(1)
    if index >= grad_input.shape[0] * height * width:
        return
    w = index % width
    h = (index // width) % height
    plane = index // (width * height)
    # windows covering row h: oh*SH - PH <= h <= oh*SH - PH + KH - 1
    numerator = h + pad_h - kernel_h + 1
    oh_first = 0 if numerator <= 0 else (numerator + stride_h - 1) // stride_h
    oh_last = (h + pad_h) // stride_h
    oh_last = oh_last if oh_last < out_h else out_h - 1
    numerator = w + pad_w - kernel_w + 1
    ow_first = 0 if numerator <= 0 else (numerator + stride_w - 1) // stride_w
    ow_last = (w + pad_w) // stride_w
    ow_last = ow_last if ow_last < out_w else out_w - 1
    total = grad_output.dtype.type(0)
    for oh in range(oh_first, oh_last + 1):
        # the divisor's row factor, as in the forward (_window)
        h_start = oh * stride_h - pad_h
        h_end = h_start + kernel_h if h_start + kernel_h < height + pad_h else height + pad_h
        factor_h = h_end - h_start
        if not count_include_pad:
            factor_h = (h_end if h_end < height else height) - (h_start if h_start > 0 else 0)
        for ow in range(ow_first, ow_last + 1):
            w_start = ow * stride_w - pad_w
            w_end = w_start + kernel_w if w_start + kernel_w < width + pad_w else width + pad_w
            factor_w = w_end - w_start
            if not count_include_pad:
                factor_w = (w_end if w_end < width else width) - (w_start if w_start > 0 else 0)
            total += grad_output[plane, oh, ow] / grad_output.dtype.type(factor_h * factor_w)
    grad_input[plane, h, w] = total


# the two passes, on the device where the data lives (the backward's output must start at zero:
# the CPU scatters into it; the GPU gather overwrites every pixel anyway)
_avg_forward = device_paths(_avg_forward_cpu, one_thread_per_element(_avg_forward_gpu, 1))
_avg_backward = device_paths(_avg_backward_cpu, one_thread_per_element(_avg_backward_gpu, 1))


# ----------------------------------------------------------------- helpers
# ----------------------------------------------------------------- public API
def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling of ``x`` (N, C, H, W) -> y (N, C, OH, OW), same dtype."""
    op = "avg_pool2d"
    check_4d(op, x)
    check_floating(op, x)
    kernel, stride, padding, _, (out_h, out_w), _ = window(
        op, x.shape, kernel_size, stride, padding, ceil_mode=ceil_mode, pooling=True)
    xp = get_array_module(x)
    batch, channels = x.shape[:2]
    y = _recycled.empty(xp, (batch, channels, out_h, out_w), x.dtype)
    arguments = (kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], bool(count_include_pad))
    _avg_forward(as_planes(xp, x), as_planes(xp, y), *arguments)
    return y


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """dL/dx (``input_shape``) from dL/dy (N, C, OH, OW); the arguments are the forward's."""
    op = "avg_pool2d_backward"
    input_shape = checked_input_shape(op, input_shape)
    kernel, stride, padding, _, (out_h, out_w), _ = window(
        op, input_shape, kernel_size, stride, padding, ceil_mode=ceil_mode, pooling=True)
    check_grad_output(op, grad_output, input_shape[:2] + (out_h, out_w))
    xp = get_array_module(grad_output)
    arguments = (kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], bool(count_include_pad))
    grad_input = _recycled.zeros(xp, input_shape, grad_output.dtype)
    _avg_backward(as_planes(xp, grad_output), as_planes(xp, grad_input), *arguments)
    return grad_input


# ----------------------------------------------------------------- the kernel contract
def forward(x, *, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """The contract form (``tinynet.ops.kernel_function``): ``(y, saved)``."""
    settings = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                    count_include_pad=count_include_pad)
    return avg_pool2d_forward(x, **settings), (tuple(x.shape), settings)


def backward(grad_output, saved, needs_input_grad=(True,)):
    input_shape, settings = saved
    return (avg_pool2d_backward(grad_output, input_shape, **settings),)
