"""2-D max pooling: forward, backward, CPU (numba) and GPU (numba.cuda).

Formula
-------
Input ``x`` of shape (N, C, H, W), window ``kernel = (KH, KW)``, ``stride = (SH, SW)``
(default: the kernel size), ``padding = (PH, PW)`` rows/columns added on each side.  Output pixel
(oh, ow) of plane (n, c) looks at the window whose top-left corner sits at
``(oh*SH - PH, ow*SW - PW)`` in input coordinates:

    y[n, c, oh, ow] = max  x[n, c, oh*SH - PH + i, ow*SW - PW + j]
                     0 <= i < KH, 0 <= j < KW

Padded positions count as -inf, so they are never selected (unlike zero
padding, which would make max(-3, pad) = 0 a value that is not in the input).
Besides ``y`` the forward pass records ``argmax[n, c, oh, ow] = h*W + w``, the
flat index of the selected pixel inside its (H, W) plane.  Ties go to the *first*
maximum in row-major window order (rows top to bottom, then columns left to
right), which is PyTorch's rule; a NaN in the window is propagated (like PyTorch,
a NaN always replaces the running maximum).

Output size
-----------
    OH = floor((H + 2*PH - KH) / SH) + 1          (ceil_mode=False, the default)

AlexNet's pools are 3x3 with stride 2, overlapping windows:
(55 - 3)/2 + 1 = 27, (27 - 3)/2 + 1 = 13, (13 - 3)/2 + 1 = 6.
With ``ceil_mode=True`` the division rounds up, but (PyTorch's rule) the last
window must start inside the input or the left padding, so that every window
holds at least one real pixel.  PyTorch also requires ``PH <= KH // 2``, which
keeps every window from being pure padding; we raise ValueError otherwise.

CPU loops
---------
Most windows lie wholly inside the input (all of AlexNet's, all but the first row and column
of ResNet's padded 3x3/2).  For the common geometries -- 3x3 at stride 2 (AlexNet, ResNet,
GoogLeNet), 2x2 at stride 2 (VGG, LeNet), 3x3 at stride 1 (GoogLeNet's inception branch) -- a
kernel of its own (``_inside_windows_kernel``) computes those outputs with the taps written
out and the stride a constant of the compiled code, so the loop over a row's outputs
vectorises; the general window-at-a-time loop (``_forward_tasks``) does the border around them
and every other geometry.  Both visit a window's taps in the same row-major order, so the bits
are the same (32x64x112x112, 3x3/2, 2 threads: 18 ms against 78 ms for the general loop alone;
benchmarks/README.md, "Measurements behind the design").

Without a backward pass (``inference``: ``no_grad``, evaluation, ``--predict``) the argmax is
not needed.  The geometries above still run the same kernels (their argmax goes to scratch
memory): they are faster than any loop without it.  Other geometries compute the maxima alone
a whole output row at a time (``_values_tasks``): every window row and column offset updates
all the outputs of the row in one loop, two to three times as fast as the window-at-a-time
loop, and the same bits.

Backward
--------
Within one window y = x[argmax] is a selection, so dy/dx[p] = 1 for the selected
pixel p and 0 for the others (almost everywhere: at ties the function has a
kink and we pick the first maximum, matching the forward).  By the chain rule

    dL/dx[n, c, h, w] = sum over (oh, ow) with argmax[n, c, oh, ow] == h*W + w
                        of dL/dy[n, c, oh, ow]

i.e. each output gradient is *routed* to the pixel that won its window.  With
overlapping windows (3x3 stride 2) one pixel may win several windows and then
receives the sum of their gradients, so the routing is an accumulation:

* CPU: one task per (n, c) plane (``_numba.parallel_tasks``), which walks its outputs
  serially and adds into its own plane: no two threads write the same place.
* GPU: one thread per *input* pixel gathers from the windows that cover it
  (``oh`` from ceil((h + PH - KH + 1)/SH) to floor((h + PH)/SH)) and keeps the
  gradients whose argmax is itself.  Nothing is written twice, so the result is
  deterministic and bit-identical to the CPU's (the sum runs in the same
  row-major output order).  The gather needs the pooling geometry; when the
  caller does not pass it, a fallback kernel scatters one thread per output with
  atomic adds (correct, but the order of the at most ceil(K/S)^2 additions into
  a pixel, hence the last bit, may vary from run to run).
"""
import numpy

from tinynet.backend import get_array_module

from ._checks import check_4d, check_floating
from . import _recycled
from .geometry import window
from ._numba import THREADS_PER_BLOCK, blocks_for, cuda, njit, parallel_tasks
from .im2col import inside_range
from ._paths import device_paths, one_thread_per_element
from ._scratch import scratch

_INT32_MAX = 2**31 - 1


def _argmax_dtype(height, width):
    """int32 halves the index traffic; planes beyond 2**31 pixels need int64."""
    return numpy.int32 if height * width <= _INT32_MAX else numpy.int64


# ----------------------------------------------------------------- CPU kernels
@njit(cache=True, nogil=True)
def _forward_tasks(x, y, argmax, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                   skip_h_first, skip_h_last, skip_w_first, skip_w_last, first, last):
    """Any window geometry, one window at a time; the outputs in rows [skip_h_first, skip_h_last)
    x columns [skip_w_first, skip_w_last) are left to a kernel of :func:`_inside_windows_kernel`."""
    planes, height, width = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for plane in range(first, last):
        source, maxima, indices = x[plane], y[plane], argmax[plane]
        for oh in range(out_h):
            # clip the window to the real input: padded rows/columns are -inf and never win
            h_start = oh * stride_h - pad_h
            h_end = min(h_start + kernel_h, height)
            h_start = max(h_start, 0)
            skipped_row = skip_h_first <= oh < skip_h_last
            for ow in range(out_w):
                if skipped_row and skip_w_first <= ow < skip_w_last:
                    continue
                w_start = ow * stride_w - pad_w
                w_end = min(w_start + kernel_w, width)
                w_start = max(w_start, 0)
                # start from the window's first real pixel (every window has one, see
                # geometry.window); reading it also keeps `best` in the input's dtype
                best = source[h_start, w_start]
                best_index = h_start * width + w_start
                # offsets counted from 0 (_numba.py, "Loops that vectorise"): 12 % faster
                for i in range(h_end - h_start):
                    h = h_start + i
                    for j in range(w_end - w_start):
                        w = w_start + j
                        value = source[h, w]
                        # strict '>' keeps the first maximum; 'value != value' propagates NaN.
                        # Written as selects (no branch): random data mispredicts the branch.
                        better = (value > best) | (value != value)
                        best = value if better else best
                        best_index = h * width + w if better else best_index
                maxima[oh, ow] = best
                indices[oh, ow] = best_index


@njit(nogil=True)
def _keep_better(value, index, best, best_index):
    better = (value > best) | (value != value)          # _forward_tasks' rule
    return (value if better else best), (index if better else best_index)


def _inside_windows_kernel(size, stride):
    """The numba kernel for the size x size windows at ``stride`` that lie wholly inside the input.

    The taps are written out and the stride is a constant of the compiled code, so the loop
    over a row's outputs vectorises (strided loads): 3x3 windows at stride 2, one thread,
    32x64x112x112, 23 ms against 146 ms for :func:`_forward_tasks` (benchmarks/README.md,
    "Measurements behind the design").  The taps are visited in the same row-major order, from
    the window's first pixel, so y and the argmax are bit for bit _forward_tasks'.
    """
    def tasks(x, y, argmax, h_first, h_last, w_first, w_last, pad_h, pad_w, first, last):
        width = x.shape[2]
        outputs = w_last - w_first
        for plane in range(first, last):
            for oh in range(h_first, h_last):
                top = oh * stride - pad_h
                left = w_first * stride - pad_w
                # rows as slices that start at the first window's column: indices counted from 0
                row0 = x[plane, top, left:]
                row1 = x[plane, top + 1, left:]
                row2 = x[plane, top + 2 if size == 3 else top + 1, left:]
                maxima = y[plane, oh, w_first:w_last]
                indices = argmax[plane, oh, w_first:w_last]
                index0 = top * width + left
                index1 = index0 + width
                index2 = index1 + width
                for ow in range(outputs):
                    w = stride * ow
                    best, best_index = row0[w], index0 + w
                    best, best_index = _keep_better(row0[w + 1], index0 + w + 1, best, best_index)
                    if size == 3:
                        best, best_index = _keep_better(row0[w + 2], index0 + w + 2, best, best_index)
                    best, best_index = _keep_better(row1[w], index1 + w, best, best_index)
                    best, best_index = _keep_better(row1[w + 1], index1 + w + 1, best, best_index)
                    if size == 3:
                        best, best_index = _keep_better(row1[w + 2], index1 + w + 2, best, best_index)
                        best, best_index = _keep_better(row2[w], index2 + w, best, best_index)
                        best, best_index = _keep_better(row2[w + 1], index2 + w + 1, best, best_index)
                        best, best_index = _keep_better(row2[w + 2], index2 + w + 2, best, best_index)
                    maxima[ow] = best
                    indices[ow] = best_index

    # a name of its own: numba's cache files and the warm-up's reports are keyed by it
    tasks.__name__ = tasks.__qualname__ = f"_inside_{size}x{size}_stride{stride}_tasks"
    return njit(cache=True, nogil=True)(tasks)


# the common pools (AlexNet, ResNet, GoogLeNet: 3x3 at stride 2; VGG, LeNet: 2x2 at 2; GoogLeNet's
# inception branch: 3x3 at 1) get their own kernel; others run _forward_tasks alone
_inside_3x3_stride2_tasks = _inside_windows_kernel(3, 2)
_inside_3x3_stride1_tasks = _inside_windows_kernel(3, 1)
_inside_2x2_stride2_tasks = _inside_windows_kernel(2, 2)
_INSIDE_WINDOWS_KERNELS = {(3, 2): _inside_3x3_stride2_tasks, (3, 1): _inside_3x3_stride1_tasks,
                           (2, 2): _inside_2x2_stride2_tasks}


def _inside_windows(x_shape, y_shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """(kernel, rows [first, last), columns [first, last)): the outputs whose whole window lies
    inside the input, and the kernel for them; (None, (0, 0), (0, 0)) without such a kernel."""
    if kernel_h != kernel_w or stride_h != stride_w or (kernel_h, stride_h) not in _INSIDE_WINDOWS_KERNELS:
        return None, (0, 0), (0, 0)
    boxes = []
    for size, out_size, pad in ((x_shape[1], y_shape[1], pad_h), (x_shape[2], y_shape[2], pad_w)):
        # o*stride - pad >= 0 (the first tap inside) and o*stride - pad + kernel - 1 <= size - 1 (the last)
        first = min(-(-pad // stride_h), out_size)
        last = (size - kernel_h + pad) // stride_h + 1 if size - kernel_h + pad >= 0 else 0
        boxes.append((first, max(first, min(last, out_size))))
    return _INSIDE_WINDOWS_KERNELS[(kernel_h, stride_h)], boxes[0], boxes[1]


def _forward_cpu(x, y, argmax, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    _pool_windows(_inside_windows(x.shape, y.shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w),
                  x, y, argmax, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)


def _pool_windows(inside_windows, x, y, argmax, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """y and argmax: the inside windows by their own kernel (where there is one), then the rest."""
    inside, (h_first, h_last), (w_first, w_last) = inside_windows
    if inside is not None and h_last > h_first and w_last > w_first:
        parallel_tasks(inside, x.shape[0], x, y, argmax, h_first, h_last, w_first, w_last, pad_h, pad_w)
    else:
        h_first = h_last = w_first = w_last = 0
    if (h_first, h_last, w_first, w_last) != (0, y.shape[1], 0, y.shape[2]):   # a border is left
        parallel_tasks(_forward_tasks, x.shape[0], x, y, argmax, kernel_h, kernel_w, stride_h, stride_w,
                       pad_h, pad_w, h_first, h_last, w_first, w_last)


@njit(cache=True, nogil=True)
def _take_max(target, source, stride, count):
    """target[k] = max(target[k], source[k*stride]) for k < count, NaN winning as in _forward_tasks.
    (Loops specialised to a literal stride of 1 or 2 measured no faster and compiled 0.1 CPU-s slower.)"""
    for k in range(count):
        value, best = source[k * stride], target[k]
        target[k] = value if (value > best) | (value != value) else best


@njit(cache=True, nogil=True)
def _values_tasks(x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, first, last):
    """The maxima alone (no argmax), a whole output row at a time: each window row and column
    offset updates every output of the row in one loop over ow.  Per output the window is
    still visited in row-major order, from -inf, so y is bit for bit _forward_tasks' y."""
    planes, height, width = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    lowest = x.dtype.type(-numpy.inf)
    for plane in range(first, last):
        source, maxima = x[plane], y[plane]
        for oh in range(out_h):
            h_start = oh * stride_h - pad_h
            h_end = min(h_start + kernel_h, height)
            h_start = max(h_start, 0)
            row_out = maxima[oh]
            row_out[:] = lowest
            for i in range(h_end - h_start):
                row = source[h_start + i]
                for j in range(kernel_w):
                    # the outputs whose column ow*stride_w + offset lies inside the row
                    offset = j - pad_w
                    first_ow, last_ow = inside_range(offset, stride_w, width, out_w)
                    _take_max(row_out[first_ow:last_ow], row[first_ow * stride_w + offset:], stride_w,
                              last_ow - first_ow)


def _values_cpu(x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    inside_windows = _inside_windows(x.shape, y.shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)
    if inside_windows[0] is not None:
        # faster than _values_tasks even with the argmax it writes (into scratch memory, dropped)
        argmax = scratch("max_pool2d_argmax", y.shape, _argmax_dtype(x.shape[1], x.shape[2]))
        _pool_windows(inside_windows, x, y, argmax, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)
    else:
        parallel_tasks(_values_tasks, x.shape[0], x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)


@njit(cache=True, nogil=True)
def _backward_tasks(grad_output, argmax, grad_input, first, last):
    planes, out_h, out_w = grad_output.shape
    width = grad_input.shape[2]
    for plane in range(first, last):
        # serial inside the plane: overlapping windows may route to the same pixel
        for oh in range(out_h):
            for ow in range(out_w):
                index = argmax[plane, oh, ow]
                grad_input[plane, index // width, index % width] += grad_output[plane, oh, ow]


def _backward_cpu(grad_output, argmax, grad_input):
    parallel_tasks(_backward_tasks, grad_output.shape[0], grad_output, argmax, grad_input)


# ----------------------------------------------------------------- GPU kernels
# The GPU kernels spell out min/max as conditional expressions: in numba 0.68 the
# builtins (and device functions) ask the CUDA driver for the device's compute
# capability while compiling, which breaks compiling to PTX on a machine without one.
@cuda.jit
def _forward_gpu(x, y, argmax, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
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
    h_end = h_start + kernel_h if h_start + kernel_h < height else height
    h_start = h_start if h_start > 0 else 0
    w_start = ow * stride_w - pad_w
    w_end = w_start + kernel_w if w_start + kernel_w < width else width
    w_start = w_start if w_start > 0 else 0
    best = x[plane, h_start, w_start]
    best_index = h_start * width + w_start
    for h in range(h_start, h_end):
        for w in range(w_start, w_end):
            value = x[plane, h, w]
            if value > best or value != value:
                best = value
                best_index = h * width + w
    y[plane, oh, ow] = best
    argmax[plane, oh, ow] = best_index


@cuda.jit
def _backward_gather_gpu(grad_output, argmax, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                         pad_h, pad_w):
    """One thread per input pixel: sum the gradients of the windows it won."""
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
    me = h * width + w
    total = grad_output.dtype.type(0)  # a literal 0.0 would make the sum float64
    for oh in range(oh_first, oh_last + 1):
        for ow in range(ow_first, ow_last + 1):
            if argmax[plane, oh, ow] == me:
                total += grad_output[plane, oh, ow]
    grad_input[plane, h, w] = total


@cuda.jit
def _backward_scatter_gpu(grad_output, argmax, grad_input):
    """Fallback without the geometry: one thread per output, atomic add into the winner."""
    out_h, out_w = grad_output.shape[1], grad_output.shape[2]
    width = grad_input.shape[2]
    index = cuda.grid(1)
    if index >= grad_output.shape[0] * out_h * out_w:
        return
    ow = index % out_w
    oh = (index // out_w) % out_h
    plane = index // (out_w * out_h)
    winner = argmax[plane, oh, ow]
    cuda.atomic.add(grad_input, (plane, winner // width, winner % width), grad_output[plane, oh, ow])


# ----------------------------------------------------------------- public API
# ----------------------------------------------------------------- the paths, by device
def _route_gradients_cpu(grad_planes, argmax_planes, grad_input_planes, geometry):
    grad_input_planes[...] = 0
    _backward_cpu(grad_planes, argmax_planes, grad_input_planes)


def _route_gradients_gpu(grad_planes, argmax_planes, grad_input_planes, geometry):
    if geometry is None:       # no window geometry from the caller: scatter with atomic adds
        grad_input_planes[...] = 0
        _backward_scatter_gpu[blocks_for(grad_planes.size), THREADS_PER_BLOCK](
            grad_planes, argmax_planes, grad_input_planes)
    else:                      # gather per input pixel: deterministic, every pixel written once
        _backward_gather_gpu[blocks_for(grad_input_planes.size), THREADS_PER_BLOCK](
            grad_planes, argmax_planes, grad_input_planes, *geometry)


_pool = device_paths(_forward_cpu, one_thread_per_element(_forward_gpu, 1))


def _values_gpu(x, y, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    # one thread per output finds its maximum either way; the argmax it also writes is dropped
    argmax = get_array_module(x).empty(y.shape, dtype=_argmax_dtype(x.shape[1], x.shape[2]))
    _pool(x, y, argmax, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)


_pool_values = device_paths(_values_cpu, _values_gpu)
_route_gradients = device_paths(_route_gradients_cpu, _route_gradients_gpu)


def _checked_planes(x, kernel_size, stride, padding, ceil_mode):
    """x as contiguous (N*C, H, W) planes, the output shape (N, C, OH, OW) and the window as the
    kernels' six integers, after the checks that name what was expected."""
    op = "max_pool2d"
    check_4d(op, x)
    check_floating(op, x)
    kernel, stride, padding, _, (out_h, out_w), _ = window(
        op, x.shape, kernel_size, stride, padding, ceil_mode=ceil_mode, pooling=True)
    batch, channels, height, width = x.shape
    planes = get_array_module(x).ascontiguousarray(x).reshape(batch * channels, height, width)
    geometry = (kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1])
    return planes, (batch, channels, out_h, out_w), geometry


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling of ``x`` (N, C, H, W) -> ``(y, argmax)``, both (N, C, OH, OW).

    ``argmax`` holds ``h*W + w`` of each window's winner (int32, or int64 for
    planes of more than 2**31 pixels); keep it for :func:`max_pool2d_backward`.
    """
    planes, out_shape, geometry = _checked_planes(x, kernel_size, stride, padding, ceil_mode)
    xp = get_array_module(x)
    y = _recycled.empty(xp, out_shape, x.dtype)
    argmax = _recycled.empty(xp, out_shape, _argmax_dtype(x.shape[2], x.shape[3]))
    plane_shape = (planes.shape[0],) + out_shape[2:]
    _pool(planes, y.reshape(plane_shape), argmax.reshape(plane_shape), *geometry)
    return y, argmax


def max_pool2d_values(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """The y of :func:`max_pool2d_forward` without the argmax, for when no backward pass follows
    (on the CPU: the fastest loop for the geometry, see "CPU loops")."""
    planes, out_shape, geometry = _checked_planes(x, kernel_size, stride, padding, ceil_mode)
    y = get_array_module(x).empty(out_shape, dtype=x.dtype)
    _pool_values(planes, y.reshape((planes.shape[0],) + out_shape[2:]), *geometry)
    return y


def max_pool2d_backward(grad_output, argmax, input_shape, kernel_size=None, stride=None, padding=0):
    """Route ``grad_output`` (N, C, OH, OW) to the winners recorded in ``argmax``.

    Returns ``grad_input`` of ``input_shape`` (N, C, H, W), zero where a pixel won
    no window.  ``kernel_size``/``stride``/``padding`` (the forward's) are only
    used on the GPU, to gather deterministically; without them the GPU path
    scatters with atomic adds.  (``ceil_mode`` is not needed: the output size is
    the shape of ``grad_output``.)
    """
    op = "max_pool2d_backward"
    check_4d(op, grad_output, "grad_output")
    check_floating(op, grad_output, "grad_output")
    input_shape = tuple(int(size) for size in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"{op}: expected a 4-D input_shape (N, C, H, W), got {input_shape}")
    if tuple(argmax.shape) != tuple(grad_output.shape) or tuple(grad_output.shape[:2]) != input_shape[:2]:
        raise ValueError(f"{op}: grad_output {tuple(grad_output.shape)} and argmax {tuple(argmax.shape)} "
                         f"must have the same shape (N, C, OH, OW) with (N, C) of input_shape {input_shape}")
    xp = get_array_module(grad_output, argmax)
    batch, channels, height, width = input_shape
    out_h, out_w = grad_output.shape[2], grad_output.shape[3]
    grad_planes = xp.ascontiguousarray(grad_output).reshape(batch * channels, out_h, out_w)
    argmax_planes = xp.ascontiguousarray(argmax).reshape(batch * channels, out_h, out_w)
    geometry = None
    if kernel_size is not None:
        kernel, stride, padding, _, _, _ = window(op, input_shape, kernel_size, stride, padding, pooling=True)
        geometry = (kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1])
    grad_input = _recycled.empty(xp, input_shape, grad_output.dtype)
    _route_gradients(grad_planes, argmax_planes, grad_input.reshape(batch * channels, height, width), geometry)
    return grad_input


# ----------------------------------------------------------------- the kernel contract
def forward(x, *, kernel_size, stride=None, padding=0, ceil_mode=False):
    """The contract form (``tinynet.ops.kernel_function``): ``(y, saved)``.

    ``saved`` holds the argmax and the window geometry: the GPU backward gathers per input
    pixel with it (deterministic, no atomics).
    """
    y, argmax = max_pool2d_forward(x, kernel_size, stride, padding, ceil_mode)
    return y, (argmax, tuple(x.shape), kernel_size, stride, padding)


def backward(grad_output, saved, needs_input_grad=(True,)):
    argmax, input_shape, kernel_size, stride, padding = saved
    return (max_pool2d_backward(grad_output, argmax, input_shape, kernel_size, stride, padding),)


def inference(x, *, kernel_size, stride=None, padding=0, ceil_mode=False):
    """The contract's forward without a backward to follow (``tinynet.ops.kernel_function``): y only."""
    return max_pool2d_values(x, kernel_size, stride, padding, ceil_mode)
