"""Adaptive 2-D average pooling: forward, backward, CPU (numba) and GPU (numba.cuda).

The formula
-----------
``adaptive_avg_pool2d`` asks for an output size (OH, OW) instead of a window and
splits the input into OH x OW bins, PyTorch's way:

    rows of bin i:  from floor(i*H/OH)  to  ceil((i+1)*H/OH)   (end excluded)

and the same for the columns.  The bins cover the input; when H is not a
multiple of OH neighbouring bins overlap by a row (13 -> 6: bins of 3 rows,
starting at 0, 2, 4, 6, 8, 10), and when OH > H rows repeat (5 -> 6: bins
[0,1), [0,2), [1,3), [2,4), [3,5), [4,5)).  y is the mean of the bin, and the
backward divides each output gradient by the bin's area and adds it to every
pixel of the bin, exactly as for fixed windows with D = bin area.

Implementation
--------------
As for ``avg_pool2d.py``: sums in the input's dtype, then divided by the bin's
area.  CPU: numba, one task per (n, c) plane, the backward scattering into its
own plane serially.  GPU: numba.cuda, one thread per output in the forward and
one thread per *input* pixel in the backward, gathering from the bins that
contain it (no atomics, deterministic, the same order of additions as the CPU).
"""
import numpy

from tinynet.backend import get_array_module

from . import _recycled
from ._checks import as_planes, check_4d, check_floating, check_grad_output, checked_input_shape
from ._numba import cuda, grain_for, njit, parallel_tasks
from ._paths import device_paths, one_thread_per_element


# ----------------------------------------------------------------- bin arithmetic
def bin_edges(out_size, size):
    """(starts, ends), int64 arrays: bin i covers rows [floor(i*size/out_size), ceil((i+1)*size/out_size)).

    Computed once per call, outside the CPU kernels: two integer divisions per output cost more
    than a small bin's sum, and an allocation inside a numba kernel adds to its compile time."""
    index = numpy.arange(out_size, dtype=numpy.int64)
    return (index * size) // out_size, ((index + 1) * size + out_size - 1) // out_size


# ----------------------------------------------------------------- CPU kernels
@njit(cache=True, nogil=True)
def _adaptive_forward_tasks(x, y, h_starts, h_ends, w_starts, w_ends, first, last):
    out_h, out_w = y.shape[1], y.shape[2]
    for plane in range(first, last):
        for oh in range(out_h):
            h_start, h_end = h_starts[oh], h_ends[oh]
            for ow in range(out_w):
                w_start, w_end = w_starts[ow], w_ends[ow]
                total = x.dtype.type(0)
                for h in range(h_start, h_end):
                    for w in range(w_start, w_end):
                        total += x[plane, h, w]
                y[plane, oh, ow] = total / x.dtype.type((h_end - h_start) * (w_end - w_start))


def _adaptive_forward_cpu(x, y):
    # a plane costs about as much as an elementwise pass over 8x its elements (1-3 ns per element
    # against 0.1-0.2: a serial sum per bin, a division per output), so ranges hold that many
    parallel_tasks(_adaptive_forward_tasks, x.shape[0], x, y, *bin_edges(y.shape[1], x.shape[1]),
                   *bin_edges(y.shape[2], x.shape[2]), grain=grain_for(8 * x.shape[1] * x.shape[2]))


@njit(cache=True, nogil=True)
def _adaptive_backward_tasks(grad_output, grad_input, h_starts, h_ends, w_starts, w_ends, first, last):
    out_h, out_w = grad_output.shape[1], grad_output.shape[2]
    for plane in range(first, last):
        for oh in range(out_h):
            h_start, h_end = h_starts[oh], h_ends[oh]
            for ow in range(out_w):
                w_start, w_end = w_starts[ow], w_ends[ow]
                share = grad_output[plane, oh, ow] / grad_output.dtype.type((h_end - h_start) * (w_end - w_start))
                for h in range(h_start, h_end):
                    for w in range(w_start, w_end):
                        grad_input[plane, h, w] += share


def _adaptive_backward_cpu(grad_output, grad_input):
    parallel_tasks(_adaptive_backward_tasks, grad_input.shape[0], grad_output, grad_input,
                   *bin_edges(grad_output.shape[1], grad_input.shape[1]),
                   *bin_edges(grad_output.shape[2], grad_input.shape[2]),
                   grain=grain_for(8 * grad_input.shape[1] * grad_input.shape[2]))


# ----------------------------------------------------------------- GPU kernels
# The bin arithmetic of bin_edges is written out inline here: in numba 0.68 device functions
# ask the CUDA driver for the device's compute capability while compiling, which breaks
# compiling to PTX on a machine without a GPU.
@cuda.jit
def _adaptive_forward_gpu(x, y):
    """One thread per output element."""
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = y.shape[1], y.shape[2]
    index = cuda.grid(1)
    if index >= y.shape[0] * out_h * out_w:
        return
    ow = index % out_w
    oh = (index // out_w) % out_h
    plane = index // (out_w * out_h)
    h_start = (oh * height) // out_h
    h_end = ((oh + 1) * height + out_h - 1) // out_h
    w_start = (ow * width) // out_w
    w_end = ((ow + 1) * width + out_w - 1) // out_w
    total = x.dtype.type(0)
    for h in range(h_start, h_end):
        for w in range(w_start, w_end):
            total += x[plane, h, w]
    y[plane, oh, ow] = total / x.dtype.type((h_end - h_start) * (w_end - w_start))


@cuda.jit
def _adaptive_backward_gpu(grad_output, grad_input):
    """One thread per input pixel, gathering from the bins that contain it."""
    height, width = grad_input.shape[1], grad_input.shape[2]
    out_h, out_w = grad_output.shape[1], grad_output.shape[2]
    index = cuda.grid(1)
    if index >= grad_input.shape[0] * height * width:
        return
    w = index % width
    h = (index // width) % height
    plane = index // (width * height)
    # bin i holds row h  <=>  floor(i*H/OH) <= h < ceil((i+1)*H/OH)
    #                    <=>  floor(h*OH/H) <= i <= ceil((h+1)*OH/H) - 1
    oh_first = (h * out_h) // height
    oh_last = ((h + 1) * out_h + height - 1) // height - 1
    ow_first = (w * out_w) // width
    ow_last = ((w + 1) * out_w + width - 1) // width - 1
    total = grad_output.dtype.type(0)
    for oh in range(oh_first, oh_last + 1):
        rows = ((oh + 1) * height + out_h - 1) // out_h - (oh * height) // out_h
        for ow in range(ow_first, ow_last + 1):
            columns = ((ow + 1) * width + out_w - 1) // out_w - (ow * width) // out_w
            total += grad_output[plane, oh, ow] / grad_output.dtype.type(rows * columns)
    grad_input[plane, h, w] = total


# the two passes, on the device where the data lives (the backward's output must start at zero:
# the CPU scatters into it; the GPU gather overwrites every pixel anyway)
_adaptive_forward = device_paths(_adaptive_forward_cpu, one_thread_per_element(_adaptive_forward_gpu, 1))
_adaptive_backward = device_paths(_adaptive_backward_cpu, one_thread_per_element(_adaptive_backward_gpu, 1))


# ----------------------------------------------------------------- checks
def _adaptive_output_size(op, input_shape, output_size):
    """``6 -> (6, 6)``; ``(None, 6) -> (H, 6)`` (None keeps the input size, as in PyTorch)."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
        sizes = output_size
    else:
        sizes = (output_size, output_size)
    out = tuple(int(input_shape[2 + axis]) if size is None else int(size) for axis, size in enumerate(sizes))
    if min(out) < 1:
        raise ValueError(f"{op}: output_size must be positive, got {out}")
    if min(input_shape[2:]) < 1:
        raise ValueError(f"{op}: the input must have at least one row and column, got shape {tuple(input_shape)}")
    return out


# ----------------------------------------------------------------- public API
def adaptive_avg_pool2d_forward(x, output_size):
    """Adaptive average pooling of ``x`` (N, C, H, W) to ``output_size`` (int, pair, None = keep)."""
    op = "adaptive_avg_pool2d"
    check_4d(op, x)
    check_floating(op, x)
    out_h, out_w = _adaptive_output_size(op, x.shape, output_size)
    xp = get_array_module(x)
    y = _recycled.empty(xp, (x.shape[0], x.shape[1], out_h, out_w), x.dtype)
    _adaptive_forward(as_planes(xp, x), as_planes(xp, y))
    return y


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """dL/dx (``input_shape``) from dL/dy (N, C, OH, OW); the bins follow from the two shapes."""
    op = "adaptive_avg_pool2d_backward"
    input_shape = checked_input_shape(op, input_shape)
    check_4d(op, grad_output, "grad_output")
    _adaptive_output_size(op, input_shape, tuple(grad_output.shape[2:]))
    check_grad_output(op, grad_output, input_shape[:2] + tuple(grad_output.shape[2:]))
    xp = get_array_module(grad_output)
    grad_input = _recycled.zeros(xp, input_shape, grad_output.dtype)
    _adaptive_backward(as_planes(xp, grad_output), as_planes(xp, grad_input))
    return grad_input


# ----------------------------------------------------------------- the kernel contract
def forward(x, *, output_size):
    """The contract form (``tinynet.ops.kernel_function``): ``(y, saved)``; the bins follow from the shapes."""
    return adaptive_avg_pool2d_forward(x, output_size), tuple(x.shape)


def backward(grad_output, saved, needs_input_grad=(True,)):
    return (adaptive_avg_pool2d_backward(grad_output, saved),)
