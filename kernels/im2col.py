"""im2col and col2im: turning a convolution into one matrix product.

The idea
--------
A 2-D convolution (strictly, a cross-correlation, as in every deep-learning
framework) of an input ``x`` of shape (N, C, H, W) with a kernel of size
(kh, kw) reads, for every output pixel (n, oh, ow), the window

    x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]     c < C, i < kh, j < kw

(stride s, padding p, dilation d; positions outside the input read zero).
Written out as one column per output pixel, those C*kh*kw numbers make a
matrix, and the whole convolution becomes ``weight (O, C*kh*kw) @ columns``:
one big GEMM, which BLAS / cuBLAS run near the peak of the machine.  Copying
the windows out is ``im2col`` ("image to columns").

The column layout
-----------------
``im2col`` returns ``cols`` of shape (C*kh*kw, N*OH*OW):

    cols[(c*kh + i)*kw + j,  (n*OH + oh)*OW + ow]
        = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]   (0 outside the input)

* The row index runs over (c, i, j) with the channel slowest, which is the
  order of ``weight.reshape(O, C*kh*kw)`` in PyTorch's (O, C, kh, kw) layout,
  so the weight needs no transpose.  With ``groups`` the rows of group g are
  the contiguous block of channels [g*C/G, (g+1)*C/G), so
  ``cols.reshape(G, C/G*kh*kw, N*OH*OW)`` is a free view and each group is a
  contiguous matrix for its own GEMM.
* The column index runs over (n, oh, ow) with the image slowest, so the whole
  mini-batch is one matrix: the GEMMs of the forward pass and of both backward
  GEMMs (``dW = dY @ cols^T`` sums over all images and pixels in one go) are as
  large as possible.  The price is that ``W @ cols`` comes out as
  (O, N, OH, OW); the convolution transposes that (output-sized) result to
  (N, O, OH, OW) in the same pass that adds the bias.

col2im: the adjoint
-------------------
``im2col`` is a linear map A from images to column matrices.  ``col2im`` is
its adjoint A^T: for every column entry it adds the value back onto the input
pixel it was copied from, so pixels that belong to several overlapping windows
receive the *sum* of their entries, and entries that came from the padding are
dropped.  That is exactly what the backward pass of a convolution needs
(``dx = col2im(W^T @ dY)``), and it is characterised by

    <im2col(x), c> = <x, col2im(c)>     for all x, c

(which the tests check).  col2im is not the inverse of im2col: an image that
goes through both comes back with every pixel multiplied by the number of
windows that contain it.

CPU and GPU
-----------
CPU: numba loops parallel over (image, channel) pairs; each task owns one
input plane, so col2im scatters into it without races.  A task first copies its
plane into *phase planes* with the zero padding around it:

    phase[a, b][r, t] = x[n, c, r*sh + a - ph, t*sw + b - pw]     (0 outside the input)

for every phase a < sh, b < sw, r < OH + (kh-1)*dh // sh, t < OW + (kw-1)*dw // sw.
Tap (i, j) then reads phase ((i*dh) % sh, (j*dw) % sw) shifted by
((i*dh) // sh, (j*dw) // sw), so each of its OH rows is a contiguous copy, with
no borders to test and no stride, whatever the layer's stride and padding: numba
compiles it to SIMD.  The padding is written once per call (every plane fills
the same inside part), and copying the plane costs a k^2/s^2-th of the columns.
col2im runs the same copies in reverse, adding into zeroed phase planes, and
then copies their inside part back to the plane.  Every pixel receives its
entries in the same (i, j) order as a direct scatter, so the sums are the same
to the bit.  Against copying each row straight from the plane, with its borders
worked out per row (one image, 2 threads, benchmarks/README.md's machine):
AlexNet's conv1 0.42 -> 0.22 ms, ResNet's stem 0.56 -> 0.17 ms, its 3x3/2 on 56 px
0.28 -> 0.16 ms, its 14 px layer 0.37 -> 0.23 ms; the stride-2 layers at batch 32
1.3-1.7x, col2im alike.
GPU: numba.cuda kernels.  im2col uses one thread per (channel, output pixel)
that writes its kh*kw column entries (neighbouring threads write neighbouring
addresses).  col2im uses one thread per *input* pixel that gathers the entries
that came from it; gathering instead of scattering needs no atomic adds, and
the sum is done in the same order every time (deterministic).
"""
import numpy

from tinynet.backend import get_array_module

from ._checks import check_4d, check_floating
from .geometry import window
from ._numba import THREADS_PER_BLOCK, blocks_for, cuda, njit, parallel_tasks, uint64
from ._paths import device_paths, one_thread_per_element


# ------------------------------------------------------------------ shapes and checks
def window_geometry(op, input_shape, kernel_size, stride, padding, dilation):
    """Validated (kernel, stride, padding, dilation, (OH, OW)) as int pairs (see ``geometry.window``)."""
    return window(op, input_shape, kernel_size, stride, padding, dilation)[:5]


def columns_shape(input_shape, kernel_size, stride, padding, dilation=(1, 1)):
    """Shape (C*kh*kw, N*OH*OW) of ``im2col`` of an input of ``input_shape``."""
    batch, channels = input_shape[0], input_shape[1]
    kernel, _, _, _, (out_height, out_width) = window_geometry(
        "im2col", input_shape, kernel_size, stride, padding, dilation)
    return channels * kernel[0] * kernel[1], batch * out_height * out_width


# ------------------------------------------------------------------ CPU kernels
@njit(cache=True, inline="always")
def inside_range(offset, stride, size, out_size):
    """Output positions o in [first, last) with 0 <= o*stride + offset < size.

    Python's floor division rounds toward -inf, so ceil(a/b) = -((-a)//b).
    """
    first = max(0, -(offset // stride))
    last = max(0, (size - 1 - offset) // stride + 1)
    first = min(first, out_size)
    last = min(max(last, first), out_size)
    return first, last


@njit(cache=True, inline="always")
def _phase_plane_shape(kernel, stride, dilation, out_size):
    """Rows (or columns) of one phase plane: the output positions plus the farthest tap's shift."""
    return out_size + ((kernel - 1) * dilation) // stride


@njit(cache=True, nogil=True)
def _im2col_tasks(image, cols, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                  dilation_h, dilation_w, out_h, out_w, first, last):
    batch, channels, height, width = image.shape
    pixels = out_h * out_w
    rows = _phase_plane_shape(kernel_h, stride_h, dilation_h, out_h)
    row_length = _phase_plane_shape(kernel_w, stride_w, dilation_w, out_w)
    # the zero padding is written once: every plane fills the same inside part (module docstring)
    phases = numpy.zeros((stride_h, stride_w, rows * row_length), cols.dtype)
    # unsigned indices: no negative-index check, so the copies vectorise (_numba.py)
    u_out_h, u_out_w, u_row_length = uint64(out_h), uint64(out_w), uint64(row_length)
    u_stride_w = uint64(stride_w)
    for task in range(first, last):
        c = task // batch
        n = task - c * batch
        plane = image[n, c]
        # phases[a, b, r*row_length + t] = x[r*sh + a - ph, t*sw + b - pw], 0 outside the input
        for a in range(stride_h):
            first_r, last_r = inside_range(a - pad_h, stride_h, height, rows)
            for b in range(stride_w):
                first_t, last_t = inside_range(b - pad_w, stride_w, width, row_length)
                phase = phases[a, b]
                count = uint64(last_t - first_t)
                for r in range(first_r, last_r):
                    target = phase[r * row_length + first_t:]
                    source = plane[r * stride_h + a - pad_h, first_t * stride_w + b - pad_w:]
                    for k in range(count):
                        target[k] = source[k * u_stride_w]
        # tap (i, j) reads phase ((i*dh) % sh, (j*dw) % sw) shifted by ((i*dh) // sh, (j*dw) // sw)
        for i in range(kernel_h):
            a, shift_r = (i * dilation_h) % stride_h, (i * dilation_h) // stride_h
            for j in range(kernel_w):
                b, shift_t = (j * dilation_w) % stride_w, (j * dilation_w) // stride_w
                block = cols[(c * kernel_h + i) * kernel_w + j, n * pixels:(n + 1) * pixels]
                source = phases[a, b, shift_r * row_length + shift_t:]
                for oh in range(u_out_h):
                    for ow in range(u_out_w):
                        block[oh * u_out_w + ow] = source[oh * u_row_length + ow]


def _im2col_cpu(image, cols, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                out_h, out_w):
    parallel_tasks(_im2col_tasks, image.shape[0] * image.shape[1], image, cols, kernel_h, kernel_w,
                   stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, out_h, out_w)


@njit(cache=True, nogil=True)
def _col2im_tasks(cols, image, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                  dilation_h, dilation_w, out_h, out_w, first, last):
    batch, channels, height, width = image.shape
    pixels = out_h * out_w
    rows = _phase_plane_shape(kernel_h, stride_h, dilation_h, out_h)
    row_length = _phase_plane_shape(kernel_w, stride_w, dilation_w, out_w)
    phases = numpy.empty((stride_h, stride_w, rows * row_length), cols.dtype)
    u_out_h, u_out_w, u_row_length = uint64(out_h), uint64(out_w), uint64(row_length)
    u_stride_w = uint64(stride_w)
    zero = cols.dtype.type(0)
    # one task per (channel, image) owning the plane image[n, c]: the scatter-add
    # of overlapping windows stays inside the task, so no two threads collide
    for task in range(first, last):
        c = task // batch
        n = task - c * batch
        plane = image[n, c]
        phases[...] = zero
        # im2col's copies in reverse: each entry adds onto its padded pixel, taps in (i, j) order
        # as a direct scatter into the plane would add them (so the same sums, bit for bit)
        for i in range(kernel_h):
            a, shift_r = (i * dilation_h) % stride_h, (i * dilation_h) // stride_h
            for j in range(kernel_w):
                b, shift_t = (j * dilation_w) % stride_w, (j * dilation_w) // stride_w
                block = cols[(c * kernel_h + i) * kernel_w + j, n * pixels:(n + 1) * pixels]
                target = phases[a, b, shift_r * row_length + shift_t:]
                for oh in range(u_out_h):
                    for ow in range(u_out_w):
                        target[oh * u_row_length + ow] += block[oh * u_out_w + ow]
        # the inside part back into the plane (the padding's sums are dropped); the rows and
        # columns past the last window's reach get 0
        plane[max(rows * stride_h - pad_h, 0):, :] = zero
        plane[:, max(row_length * stride_w - pad_w, 0):] = zero
        for a in range(stride_h):
            first_r, last_r = inside_range(a - pad_h, stride_h, height, rows)
            for b in range(stride_w):
                first_t, last_t = inside_range(b - pad_w, stride_w, width, row_length)
                phase = phases[a, b]
                count = uint64(last_t - first_t)
                for r in range(first_r, last_r):
                    source = phase[r * row_length + first_t:]
                    target = plane[r * stride_h + a - pad_h, first_t * stride_w + b - pad_w:]
                    for k in range(count):
                        target[k * u_stride_w] = source[k]


def _col2im_cpu(cols, image, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                out_h, out_w):
    parallel_tasks(_col2im_tasks, image.shape[0] * image.shape[1], cols, image, kernel_h, kernel_w,
                   stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, out_h, out_w)


# ------------------------------------------------------------------ GPU kernels
@cuda.jit
def _im2col_gpu(image, cols, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                dilation_h, dilation_w, out_h, out_w):
    """One thread per (channel, image, output pixel); it writes its kh*kw entries."""
    index = cuda.grid(1)
    batch, channels, height, width = image.shape
    columns = cols.shape[1]                      # N*OH*OW
    if index >= channels * columns:
        return
    c = index // columns
    column = index - c * columns                 # (n*OH + oh)*OW + ow
    pixels = out_h * out_w
    n = column // pixels
    pixel = column - n * pixels
    oh = pixel // out_w
    ow = pixel - oh * out_w
    h0 = oh * stride_h - pad_h
    w0 = ow * stride_w - pad_w
    row = c * kernel_h * kernel_w
    for i in range(kernel_h):
        h = h0 + i * dilation_h
        for j in range(kernel_w):
            w = w0 + j * dilation_w
            if h >= 0 and h < height and w >= 0 and w < width:
                cols[row, column] = image[n, c, h, w]
            else:
                cols[row, column] = 0
            row += 1


@cuda.jit
def _col2im_gpu(cols, image, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                dilation_h, dilation_w, out_h, out_w):
    """One thread per input pixel (n, c, h, w): gather every column entry copied from it.

    Tap i of the kernel read row h for output row oh when oh*sh - ph + i*dh = h,
    i.e. oh = (h + ph - i*dh) / sh, which must be a whole number in [0, OH).
    """
    index = cuda.grid(1)
    batch, channels, height, width = image.shape
    if index >= batch * channels * height * width:
        return
    w = index % width
    rest = index // width
    h = rest % height
    rest = rest // height
    c = rest % channels
    n = rest // channels
    pixels = out_h * out_w
    column0 = n * pixels
    total = cols.dtype.type(0)                   # accumulate in the data's own precision
    for i in range(kernel_h):
        shifted_h = h + pad_h - i * dilation_h
        if shifted_h < 0:
            break                                # larger i only shift further up
        if shifted_h % stride_h != 0:
            continue
        oh = shifted_h // stride_h
        if oh >= out_h:
            continue
        for j in range(kernel_w):
            shifted_w = w + pad_w - j * dilation_w
            if shifted_w < 0:
                break
            if shifted_w % stride_w != 0:
                continue
            ow = shifted_w // stride_w
            if ow >= out_w:
                continue
            total += cols[(c * kernel_h + i) * kernel_w + j, column0 + oh * out_w + ow]
    image[n, c, h, w] = total


# ------------------------------------------------------------------ public functions
# ------------------------------------------------------------------ the paths, by device
def _im2col_launch_gpu(x, cols, *arguments):
    # one thread per (channel, column): each copies its kh*kw entries
    _im2col_gpu[blocks_for(x.shape[1] * cols.shape[1]), THREADS_PER_BLOCK](x, cols, *arguments)


_copy_windows = device_paths(_im2col_cpu, _im2col_launch_gpu, name="im2col")
_sum_windows = device_paths(_col2im_cpu, one_thread_per_element(_col2im_gpu, 1), name="col2im")


def im2col_into(x, cols, kernel_size, stride, padding, dilation=(1, 1)):
    """Write the columns of ``x`` into the preallocated C-contiguous ``cols`` (C*kh*kw, N*OH*OW).

    Lets a caller reuse one buffer across calls; returns ``cols``.
    """
    check_4d("im2col", x)
    check_floating("im2col", x)
    kernel, stride, padding, dilation, (out_h, out_w) = window_geometry(
        "im2col", x.shape, kernel_size, stride, padding, dilation)
    batch, channels = x.shape[0], x.shape[1]
    expected = (channels * kernel[0] * kernel[1], batch * out_h * out_w)
    if tuple(cols.shape) != expected or cols.dtype != x.dtype or not cols.flags.c_contiguous:
        raise ValueError(
            f"im2col: expected a C-contiguous output buffer of shape {expected} and dtype {x.dtype}, "
            f"got shape {tuple(cols.shape)}, dtype {cols.dtype}, "
            f"C-contiguous={bool(cols.flags.c_contiguous)}")
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    arguments = (kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
                 dilation[0], dilation[1], out_h, out_w)
    _copy_windows(x, cols, *arguments)
    return cols


def im2col(x, kernel_size, stride, padding, dilation=(1, 1)):
    """Columns of ``x`` (N, C, H, W): an array (C*kh*kw, N*OH*OW), layout in the module docstring.

    ``kernel_size``, ``stride``, ``padding``, ``dilation``: ints or (height, width)
    pairs.  The result lives where ``x`` lives and has its dtype.
    """
    check_4d("im2col", x)
    xp = get_array_module(x)
    cols = xp.empty(columns_shape(x.shape, kernel_size, stride, padding, dilation), dtype=x.dtype)
    return im2col_into(x, cols, kernel_size, stride, padding, dilation)


def col2im(cols, input_shape, kernel_size, stride, padding, dilation=(1, 1), out=None):
    """The adjoint of :func:`im2col`: an image of ``input_shape`` (N, C, H, W) where
    every pixel holds the sum of the column entries that were copied from it.

    ``out``: optional preallocated C-contiguous array of ``input_shape`` and the
    dtype of ``cols`` to write the image into (overwritten, not added to); it lets
    a caller fill a slice of a larger array, e.g. a chunk of images of a batch.
    """
    input_shape = tuple(int(size) for size in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"col2im: expected a 4-D input_shape (N, C, H, W), got {input_shape}")
    check_floating("col2im", cols, "column matrix")
    kernel, stride, padding, dilation, (out_h, out_w) = window_geometry(
        "col2im", input_shape, kernel_size, stride, padding, dilation)
    batch, channels = input_shape[0], input_shape[1]
    expected = (channels * kernel[0] * kernel[1], batch * out_h * out_w)
    if tuple(cols.shape) != expected:
        raise ValueError(
            f"col2im: expected a column matrix of shape (C*kh*kw, N*OH*OW) = {expected} for "
            f"input_shape {input_shape}, got shape {tuple(cols.shape)}")
    xp = get_array_module(cols)
    cols = xp.ascontiguousarray(cols)
    if out is None:
        image = xp.empty(input_shape, dtype=cols.dtype)
    elif tuple(out.shape) != input_shape or out.dtype != cols.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"col2im: expected a C-contiguous out array of shape {input_shape} and dtype "
            f"{cols.dtype}, got shape {tuple(out.shape)}, dtype {out.dtype}, "
            f"C-contiguous={bool(out.flags.c_contiguous)}")
    else:
        image = out
    arguments = (kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
                 dilation[0], dilation[1], out_h, out_w)
    _sum_windows(cols, image, *arguments)
    return image
