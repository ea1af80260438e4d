"""Local response normalization (LRN) across channels, as in AlexNet.

The formula
-----------
Every activation is divided by a power of the energy of its neighbours in the
channel direction, at the same image and pixel:

    b[n, c, h, w] = a[n, c, h, w] / scale[n, c, h, w] ** beta

    scale[n, c, h, w] = k + alpha' * sum_{c' in window(c)} a[n, c', h, w] ** 2

The window of channel c holds ``size`` consecutive channels and is clipped to
the channels that exist:

    window(c) = { c' : c - size//2  <=  c'  <=  c + (size-1)//2,  0 <= c' < C }

This is exactly PyTorch's window (``F.local_response_norm`` pads ``size//2``
zero channels before and ``(size-1)//2`` after, then averages ``size`` of
them).  For odd sizes it is centred (size 5: c-2 ... c+2); for even sizes it
reaches one channel further *down* than up (size 4: c-2 ... c+1).  At the
borders it simply holds fewer channels; the divisor of alpha (below) stays
``size``, as in PyTorch and Caffe.

Shapes: x of shape (N, C, H, W); any shape (N, C, *spatial) with at least two
axes works the same way, every trailing position being one "pixel" (a 2-D
input (N, C) is one pixel per image).  y and scale have the shape of x.

Two conventions for alpha
-------------------------
The AlexNet paper (Krizhevsky, Sutskever, Hinton 2012) writes the sum with a
bare alpha and uses k = 2, n = size = 5, alpha = 1e-4, beta = 0.75:

    paper / lecture:   alpha' = alpha                (alpha_scaled_by_size=False)
    PyTorch / Caffe:   alpha' = alpha / size         (alpha_scaled_by_size=True, default)

Worked number: five channels all equal to a = 1, paper values, middle channel
(its window holds all five, sum of squares 5):

    paper:    scale = 2 + 1e-4 * 5     = 2.0005,  divisor 2.0005**0.75 = 1.682108
    PyTorch:  scale = 2 + 1e-4 / 5 * 5 = 2.0001,  divisor 2.0001**0.75 = 1.681856

so the same "alpha = 1e-4" means a five times weaker normalisation in PyTorch.
The paper's layer is PyTorch's with ``alpha = 5e-4`` (alpha * size).

Backward pass
-------------
Write s_c = scale_c (one image and pixel; the channel is the only index that
matters).  y_c = x_c * s_c^(-beta) depends on x_j directly (j = c) and through
every s_c whose window contains j:

    ds_c / dx_j = 2 alpha' x_j     if j in window(c), else 0

    dy_c / dx_j = [c == j] s_c^(-beta)  -  beta x_c s_c^(-beta-1) * 2 alpha' x_j [j in window(c)]
                = [c == j] s_c^(-beta)  -  2 alpha' beta x_j * (y_c / s_c) [j in window(c)]

Summing against the incoming gradient dy_c:

    dx_j = dy_j * s_j^(-beta)  -  2 alpha' beta x_j * sum_{c : j in window(c)} dy_c y_c / s_c

"j in window(c)" means c - size//2 <= j <= c + (size-1)//2, i.e.
j - (size-1)//2 <= c <= j + size//2: the backward sum runs over the *mirrored*
window.  The two coincide for odd sizes; for even sizes confusing them is a
bug that a small alpha hides (a missing channel changes the gradient by about
alpha' * x^2, far below test tolerances), which is why the tests use alpha up
to 1.  The backward uses x, y and scale saved by the forward pass; it
recomputes s^(-beta) rather than y / x, which would divide by zero.

CPU and GPU
-----------
Both paths slide the window along the channels with a running sum: add the
square of the channel that enters, subtract the one that leaves, so each
output costs O(1) instead of O(size).  The running sums are kept in float64:
float32 squares are exact in float64, and the cancellation of add-then-
subtract stays at ~1e-16 of the largest value seen (it is clamped at zero so
that a rounding residue can never make the sum negative).

CPU: numba, parallel over (image, block of pixels) tasks.  Channels are the
outer loop and the pixels of the block the inner one, so every inner loop
walks contiguous memory (the channel stride is H*W) and vectorises; the
block's running sums (one per pixel) stay in the L1/L2 cache.
GPU: numba.cuda, one thread per (image, pixel) column looping over the
channels; neighbouring threads read neighbouring pixels, so every load of a
warp is one coalesced transaction.

s^(-beta) is a ``pow`` per element, which numba cannot vectorise without
Intel's SVML; for beta = 0.75 (AlexNet) it is computed as
1 / (sqrt(s) * sqrt(sqrt(s))), which is exact to a few ulp and vectorises.
"""
import math

import numpy

from tinynet.backend import get_array_module, get_num_threads

from . import _recycled
from ._numba import THREADS_PER_BLOCK, blocks_for, cuda, njit, parallel_tasks
from ._paths import device_paths

_OP = "local_response_norm"

#: the largest block of pixels one CPU task normalises (its running sums: 8 KiB of float64)
_MAX_PIXELS_PER_TASK = 1024
_MIN_PIXELS_PER_TASK = 64


# ---------------------------------------------------------------- checks and shapes
def _check_input(x, size):
    if x.ndim < 2:
        raise ValueError(
            f"{_OP}: expected an input of shape (N, C, ...) with at least 2 dimensions, "
            f"got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise ValueError(f"{_OP}: expected a floating-point input (float32 or float64), got dtype {x.dtype}")
    if int(size) != size or size < 1:
        raise ValueError(f"{_OP}: size must be a positive integer, got {size!r}")


def _effective_alpha(alpha, size, alpha_scaled_by_size):
    return alpha / size if alpha_scaled_by_size else alpha


def _as_columns(xp, array):
    """(N, C, *spatial) -> contiguous (N, C, S) with S = prod(spatial) (1 for a 2-D input)."""
    array = xp.ascontiguousarray(array)
    pixels = 1
    for extent in array.shape[2:]:
        pixels *= int(extent)
    return array.reshape(array.shape[0], array.shape[1], pixels)   # not -1: ambiguous when empty


def _pixels_per_task(batch, pixels):
    """Blocks big enough to vectorise, small enough to give every CPU thread work."""
    wanted_tasks = 4 * get_num_threads()
    blocks_per_image = max(1, -(-wanted_tasks // max(batch, 1)))
    block = -(-max(pixels, 1) // blocks_per_image)
    return int(min(_MAX_PIXELS_PER_TASK, max(_MIN_PIXELS_PER_TASK, block)))


# ---------------------------------------------------------------- CPU kernels
@njit(cache=True, inline="always")
def _divide_by_power(value, scale_value, beta, three_quarters):
    """value / scale ** beta, in the dtype of the arguments.

    The AlexNet case beta = 0.75 uses square roots (s**0.75 = sqrt(s) * sqrt(sqrt(s))),
    which vectorise; a general pow does not (numba has no vector pow without SVML).
    """
    if three_quarters:
        root = math.sqrt(scale_value)
        return value / (root * math.sqrt(root))
    return value * scale_value ** -beta


@njit(cache=True, nogil=True)
def _forward_tasks(x, y, scale, size, alpha, beta, k, pixels_per_task, first, last):
    batch, channels, pixels = x.shape
    before = size // 2            # channels of the window below c
    after = (size - 1) // 2       # channels of the window above c
    three_quarters = beta == 0.75     # beta arrives in the data's dtype: float32 pow for float32 data
    blocks = (pixels + pixels_per_task - 1) // pixels_per_task
    for task in range(first, last):
        n = task // blocks
        start = (task % blocks) * pixels_per_task
        stop = min(start + pixels_per_task, pixels)
        window_sum = numpy.zeros(stop - start, numpy.float64)
        # the window of channel 0 is [0, after]; channel `after` enters in the loop
        for c in range(min(after, channels)):
            for p in range(start, stop):
                value = numpy.float64(x[n, c, p])
                window_sum[p - start] += value * value
        for c in range(channels):
            entering = c + after
            if entering < channels:
                for p in range(start, stop):
                    value = numpy.float64(x[n, entering, p])
                    window_sum[p - start] += value * value
            for p in range(start, stop):
                total = max(window_sum[p - start], 0.0)
                scale[n, c, p] = k + alpha * total
                y[n, c, p] = _divide_by_power(x[n, c, p], scale[n, c, p], beta, three_quarters)
            leaving = c - before
            if leaving >= 0:
                for p in range(start, stop):
                    value = numpy.float64(x[n, leaving, p])
                    window_sum[p - start] -= value * value


def _forward_cpu(x, y, scale, size, alpha, beta, k, pixels_per_task):
    parallel_tasks(_forward_tasks, x.shape[0] * (-(-x.shape[2] // pixels_per_task)), x, y, scale, size,
                   alpha, beta, k, pixels_per_task)


@njit(cache=True, nogil=True)
def _backward_tasks(grad_output, x, y, scale, grad_input, size, two_alpha_beta, beta, pixels_per_task,
                    first, last):
    batch, channels, pixels = x.shape
    # j receives from every c whose window holds j: c in [j - after, j + before]
    before = size // 2
    after = (size - 1) // 2
    three_quarters = beta == 0.75
    blocks = (pixels + pixels_per_task - 1) // pixels_per_task
    for task in range(first, last):
        n = task // blocks
        start = (task % blocks) * pixels_per_task
        stop = min(start + pixels_per_task, pixels)
        # running sum of dy_c * y_c / s_c over the mirrored window
        window_sum = numpy.zeros(stop - start, numpy.float64)
        for c in range(min(before, channels)):
            for p in range(start, stop):
                window_sum[p - start] += (numpy.float64(grad_output[n, c, p]) * y[n, c, p]) / scale[n, c, p]
        for j in range(channels):
            entering = j + before
            if entering < channels:
                for p in range(start, stop):
                    window_sum[p - start] += ((numpy.float64(grad_output[n, entering, p]) * y[n, entering, p])
                                              / scale[n, entering, p])
            for p in range(start, stop):
                direct = _divide_by_power(grad_output[n, j, p], scale[n, j, p], beta, three_quarters)
                grad_input[n, j, p] = direct - two_alpha_beta * x[n, j, p] * window_sum[p - start]
            leaving = j - after
            if leaving >= 0:
                for p in range(start, stop):
                    window_sum[p - start] -= ((numpy.float64(grad_output[n, leaving, p]) * y[n, leaving, p])
                                              / scale[n, leaving, p])


def _backward_cpu(grad_output, x, y, scale, grad_input, size, two_alpha_beta, beta, pixels_per_task):
    parallel_tasks(_backward_tasks, x.shape[0] * (-(-x.shape[2] // pixels_per_task)), grad_output, x, y,
                   scale, grad_input, size, two_alpha_beta, beta, pixels_per_task)


# ---------------------------------------------------------------- GPU kernels
@cuda.jit
def _forward_gpu(x, y, scale, size, alpha, beta, k, three_quarters):
    """One thread per (image, pixel) column; ``beta`` and ``k`` arrive in the data's dtype."""
    batch, channels, pixels = x.shape
    column = cuda.grid(1)
    if column >= batch * pixels:
        return
    n = column // pixels
    p = column - n * pixels
    before = size // 2
    after = (size - 1) // 2
    window_sum = 0.0      # float64: see the module docstring
    # (no min/max builtins in the CUDA kernels: numba 0.68 compiles them as device
    # functions that query the current GPU, so compile_ptx fails without one)
    primed = after if after < channels else channels
    for c in range(primed):
        value = float(x[n, c, p])     # to float64 first (under the simulator too): float32 squares are exact there
        window_sum += value * value
    for c in range(channels):
        entering = c + after
        if entering < channels:
            value = float(x[n, entering, p])
            window_sum += value * value
        if window_sum < 0.0:      # a rounding residue of add-then-subtract
            window_sum = 0.0
        scale[n, c, p] = k + alpha * window_sum
        scale_value = scale[n, c, p]          # read back in the data's dtype
        if three_quarters:
            root = math.sqrt(scale_value)
            y[n, c, p] = x[n, c, p] / (root * math.sqrt(root))
        else:
            y[n, c, p] = x[n, c, p] * scale_value ** -beta
        leaving = c - before
        if leaving >= 0:
            value = float(x[n, leaving, p])
            window_sum -= value * value


@cuda.jit
def _backward_gpu(grad_output, x, y, scale, grad_input, size, two_alpha_beta, beta, three_quarters):
    batch, channels, pixels = x.shape
    column = cuda.grid(1)
    if column >= batch * pixels:
        return
    n = column // pixels
    p = column - n * pixels
    before = size // 2
    after = (size - 1) // 2
    window_sum = 0.0
    primed = before if before < channels else channels
    for c in range(primed):
        window_sum += float(grad_output[n, c, p]) * float(y[n, c, p]) / float(scale[n, c, p])
    for j in range(channels):
        entering = j + before
        if entering < channels:
            window_sum += float(grad_output[n, entering, p]) * float(y[n, entering, p]) / float(scale[n, entering, p])
        scale_value = scale[n, j, p]
        if three_quarters:
            root = math.sqrt(scale_value)
            direct = grad_output[n, j, p] / (root * math.sqrt(root))
        else:
            direct = grad_output[n, j, p] * scale_value ** -beta
        grad_input[n, j, p] = direct - two_alpha_beta * x[n, j, p] * window_sum
        leaving = j - after
        if leaving >= 0:
            window_sum -= float(grad_output[n, leaving, p]) * float(y[n, leaving, p]) / float(scale[n, leaving, p])


# ---------------------------------------------------------------- the paths, by device
# Both take (N, C, P) columns.  The CPU loops run tasks of several pixels (one channel sweep
# each); the GPU runs one thread per (n, pixel), and passes 0.75 as a flag so that the common
# beta takes the cheaper x^-3/4 = 1/sqrt(x*sqrt(x)) form (see _divide_by_power).
def _normalize_cpu(columns, y, scale, size, alpha_effective, beta, k):
    _forward_cpu(columns, y, scale, size, alpha_effective, columns.dtype.type(beta), float(k),
                 _pixels_per_task(columns.shape[0], columns.shape[2]))


def _normalize_gpu(columns, y, scale, size, alpha_effective, beta, k):
    dtype = columns.dtype.type
    _forward_gpu[blocks_for(columns.shape[0] * columns.shape[2]), THREADS_PER_BLOCK](
        columns, y, scale, size, alpha_effective, dtype(beta), dtype(k), beta == 0.75)


def _normalize_backward_cpu(grad_columns, x_columns, y_columns, scale_columns, grad_input, size,
                            two_alpha_beta, beta):
    _backward_cpu(grad_columns, x_columns, y_columns, scale_columns, grad_input, size, two_alpha_beta,
                  x_columns.dtype.type(beta), _pixels_per_task(x_columns.shape[0], x_columns.shape[2]))


def _normalize_backward_gpu(grad_columns, x_columns, y_columns, scale_columns, grad_input, size,
                            two_alpha_beta, beta):
    _backward_gpu[blocks_for(x_columns.shape[0] * x_columns.shape[2]), THREADS_PER_BLOCK](
        grad_columns, x_columns, y_columns, scale_columns, grad_input, size, two_alpha_beta,
        x_columns.dtype.type(beta), beta == 0.75)


_normalize = device_paths(_normalize_cpu, _normalize_gpu)
_normalize_backward = device_paths(_normalize_backward_cpu, _normalize_backward_gpu)


# ---------------------------------------------------------------- public API
def local_response_norm_forward(x, size, alpha=1e-4, beta=0.75, k=1.0, alpha_scaled_by_size=True):
    """Normalise ``x`` (N, C, ...) across channels; returns ``(y, scale)``.

    ``scale = k + alpha' * (sum of squares over the window)`` has x's shape and
    dtype and is what the backward pass needs besides x and y.
    ``alpha_scaled_by_size=True`` is PyTorch's / Caffe's alpha' = alpha / size;
    ``False`` is the AlexNet paper's alpha' = alpha (see the module docstring).
    """
    xp = get_array_module(x)
    _check_input(x, size)
    size = int(size)
    alpha_effective = float(_effective_alpha(alpha, size, alpha_scaled_by_size))
    columns = _as_columns(xp, x)
    y = _recycled.empty(xp, columns.shape, x.dtype)
    scale = _recycled.empty(xp, columns.shape, x.dtype)
    _normalize(columns, y, scale, size, alpha_effective, beta, k)
    return y.reshape(x.shape), scale.reshape(x.shape)


def local_response_norm_backward(grad_output, x, y, scale, size, alpha=1e-4, beta=0.75, k=1.0,
                                 alpha_scaled_by_size=True):
    """Gradient of the loss with respect to x, given dL/dy and the forward's x, y, scale.

    dx_j = dy_j s_j^(-beta) - 2 alpha' beta x_j sum_{c: j in window(c)} dy_c y_c / s_c.
    ``k`` is not needed (it is inside ``scale``) and accepted for a symmetric call.
    """
    xp = get_array_module(grad_output, x, y, scale)
    _check_input(x, size)
    for name, array in (("grad_output", grad_output), ("y", y), ("scale", scale)):
        if tuple(array.shape) != tuple(x.shape):
            raise ValueError(f"{_OP} backward: {name} must have the input's shape {tuple(x.shape)}, "
                             f"got shape {tuple(array.shape)}")
    size = int(size)
    alpha_effective = float(_effective_alpha(alpha, size, alpha_scaled_by_size))
    two_alpha_beta = 2.0 * alpha_effective * float(beta)
    dtype = x.dtype
    grad_columns, x_columns, y_columns, scale_columns = (
        _as_columns(xp, array.astype(dtype, copy=False)) for array in (grad_output, x, y, scale))
    grad_input = _recycled.empty(xp, x_columns.shape, dtype)
    _normalize_backward(grad_columns, x_columns, y_columns, scale_columns, grad_input, size,
                        two_alpha_beta, beta)
    return grad_input.reshape(x.shape)


# ---------------------------------------------------------------- the kernel contract
def forward(x, *, size, alpha=1e-4, beta=0.75, k=1.0, alpha_scaled_by_size=True):
    """The contract form (``tinynet.ops.kernel_function``): ``(y, saved)`` with x, y, the scale and settings."""
    settings = dict(size=size, alpha=alpha, beta=beta, k=k, alpha_scaled_by_size=alpha_scaled_by_size)
    y, scale = local_response_norm_forward(x, **settings)
    return y, (x, y, scale, settings)


def backward(grad_output, saved, needs_input_grad=(True,)):
    x, y, scale, settings = saved
    return (local_response_norm_backward(grad_output, x, y, scale, **settings),)
