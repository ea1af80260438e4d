r"""A strided convolution as a stride-1 convolution of a space-to-depth input.

Why
---
AlexNet's conv1 (96 filters of 11x11x3 at stride 4) is a poor fit for im2col:
its column matrix (363 rows, one column per output pixel) is 9.5 times the
size of the input, so writing and reading it costs as much as the GEMM, and the
GEMM itself is thin (K = 363).  A stride s convolution can instead be rewritten
exactly as a stride-1 convolution with a kernel s times smaller on an input
with s*s times more channels; a 3x3 stride-1 convolution is Winograd's ground
(``conv2d_winograd.py``), which needs about 4.6x fewer multiplications.

The rewriting
-------------
Take a convolution with stride (sh, sw), padding (ph, pw), no dilation:

    y[n, o, oh, ow] = sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, oh*sh + i, ow*sw + j]

where x_pad is x with ph rows of zeros above and pw columns left (and zeros
below and right, as far as needed).  Split every kernel offset by the stride,
i = sh*a + r and j = sw*b + t with 0 <= r < sh, 0 <= t < sw, and the
kernel blocks a < KA = ceil(kh/sh), b < KB = ceil(kw/sw):

    oh*sh + i = sh*(oh + a) + r        ow*sw + j = sw*(ow + b) + t

so with the space-to-depth input and the rearranged weight

    X'[n, (c, r, t), u, v] = x_pad[n, c, sh*u + r, sw*v + t]                  (N, C*sh*sw, Hs, Ws)
    W'[o, (c, r, t), a, b] = W[o, c, sh*a + r, sw*b + t]   (0 where sh*a + r >= kh or sw*b + t >= kw)

the sum is a plain stride-1, unpadded convolution of X' with W':

    y[n, o, oh, ow] = sum_{(c, r, t), a, b} W'[o, (c, r, t), a, b] * X'[n, (c, r, t), oh + a, ow + b]

The channel index is c*sh*sw + r*sw + t: channel c's sh*sw phases stay
together, so a group of input channels stays a contiguous block and ``groups``
carries over unchanged.  X' needs Hs = OH + KA - 1 rows (Ws = OW + KB - 1
columns), i.e. x_pad has sh*Hs rows: rows of x beyond that are never read by
the original convolution either, and rows past x's end are zeros.

AlexNet's conv1: 227x227x3, 11x11 at stride 4 -> X' is 57x57x48 and W' is
96x48x3x3 (11x11 padded to 12x12: 19 % more weights, all of them zero), and
the output is the same 55x55x96.

The backward pass
-----------------
Both rearrangements are linear maps that only move numbers (and drop or add
zeros), so the chain rule runs them backwards:

* dW: dW' comes from the stride-1 convolution's backward pass; W'[o, (c, r, t), a, b]
  is a copy of W[o, c, sh*a + r, sw*b + t], so dW[o, c, i, j] = dW'[o, (c, i % sh, j % sw),
  i // sh, j // sw] -- the inverse rearrangement, dropping the padded taps (they are
  constants, not weights).
* dx: every X' entry is a copy of one x_pad entry (each x_pad entry appears at most
  once), so dx_pad is dX' rearranged back, depth-to-space; dx is its interior
  (the padding's gradient is dropped), zero on rows and columns of x that X' does not hold.
* db is the stride-1 convolution's: the sum of dy over images and pixels.

The rearrangements are memory-bound copies of the input's size (not 9.5 times
it, as conv1's columns are).
"""
import numpy

from . import conv2d_winograd
from . import _recycled
from .geometry import output_size
from ._numba import njit, parallel_tasks
from ._scratch import scratch


def _blocks(kernel, stride):
    """Kernel taps per phase along one axis: ceil(k / s)."""
    return -(-kernel // stride)


def transformed_shapes(x_shape, weight_shape, stride, padding):
    """``(x' shape, weight' shape)`` of the stride-1 convolution that computes the strided one."""
    batch, channels, height, width = x_shape
    out_channels, channels_per_group, kh, kw = weight_shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = output_size(height, kh, sh, ph), output_size(width, kw, sw, pw)
    ka, kb = _blocks(kh, sh), _blocks(kw, sw)
    return ((batch, channels * sh * sw, out_h + ka - 1, out_w + kb - 1),
            (out_channels, channels_per_group * sh * sw, ka, kb))


#: below this many Winograd tiles of the rewritten convolution im2col was as fast or faster: conv1's
#: forward at batch 1-4 (227 px, 196-784 tiles) and 8 (128 px, 800 tiles), its forward + backward at
#: 128 px batch 16 (1,600 tiles) even; from 1,568 tiles at 227 px and 3,200 at 128 px the rewriting
#: was 7-12 % faster (timings: benchmarks/README.md, "Measurements behind the design")
MIN_TILES = 1024


def supports(x_shape, weight_shape, stride, padding, dilation, groups, any_size=False):
    """True for a strided, undilated convolution whose stride-1 form Winograd takes and that pays:
    a square kernel of ceil(k/s) = 3..5 taps, >= 16 channels per group after the rewriting, and
    Winograd's other conditions (``conv2d_winograd.supports``) with at least ``MIN_TILES`` tiles
    (``any_size``: whatever the number of tiles)."""
    if tuple(stride) == (1, 1) or tuple(dilation) != (1, 1):
        return False
    # Measured (benchmarks/README.md): the rewriting pays when the stride-1 form still has 3x3 or
    # larger filters (AlexNet's conv1: 11x11/4 -> 3x3); for 3x3 at stride 2 (-> 2x2 filters on 4C
    # channels, 16/9 of the weights) its backward pass was 1.5x slower than im2col's.
    if min(_blocks(weight_shape[2], stride[0]), _blocks(weight_shape[3], stride[1])) < 3:
        return False
    if max(padding) >= min(weight_shape[2:]):     # all-padding windows: not worth a special case
        return False
    x_shape_s2d, weight_shape_s2d = transformed_shapes(x_shape, weight_shape, stride, padding)
    if min(x_shape_s2d[2:]) < weight_shape_s2d[2]:
        return False
    return conv2d_winograd.supports(x_shape_s2d, weight_shape_s2d, (1, 1), (0, 0), (1, 1), groups,
                                    min_tiles=MIN_TILES, any_size=any_size)


# ------------------------------------------------------------------ the rearrangements
@njit(cache=True, nogil=True)
def _space_to_depth_tasks(x, sh, sw, ph, pw, out, first, last):
    """out[n, (c*sh + r)*sw + t, u, v] = x[n, c, sh*u + r - ph, sw*v + t - pw] (0 outside x).

    One task per (image, channel): NumPy's pad + transpose + copy ran on one core and
    took as long as a fifth of conv1's Winograd GEMMs."""
    batch, channels, height, width = x.shape
    rows, columns = out.shape[2], out.shape[3]
    for task in range(first, last):
        n = task // channels
        c = task % channels
        for r in range(sh):
            for t in range(sw):
                plane = (c * sh + r) * sw + t
                for u in range(rows):
                    h = sh * u + r - ph
                    if h < 0 or h >= height:
                        for v in range(columns):
                            out[n, plane, u, v] = 0
                        continue
                    for v in range(columns):
                        w = sw * v + t - pw
                        out[n, plane, u, v] = x[n, c, h, w] if 0 <= w < width else 0


def _space_to_depth_cpu(x, sh, sw, ph, pw, out):
    parallel_tasks(_space_to_depth_tasks, x.shape[0] * x.shape[1], x, sh, sw, ph, pw, out)


def space_to_depth(x, stride, padding, rows, columns, out=None):
    """X' (N, C*sh*sw, rows, columns) from x (N, C, H, W): X'[n, (c, r, t), u, v] = x_pad[n, c, sh*u + r, sw*v + t]."""
    batch, channels = x.shape[:2]
    (sh, sw), (ph, pw) = stride, padding
    if out is None:
        out = _recycled.empty(numpy, (batch, channels * sh * sw, rows, columns), x.dtype)
    _space_to_depth_cpu(numpy.ascontiguousarray(x), sh, sw, ph, pw, out)
    return out


def depth_to_space(grad_x_s2d, x_shape, stride, padding):
    """The adjoint of :func:`space_to_depth`: dx (N, C, H, W) from dX' (the padding's share dropped)."""
    batch, channels, height, width = x_shape
    (sh, sw), (ph, pw) = stride, padding
    _, _, rows, columns = grad_x_s2d.shape
    padded = grad_x_s2d.reshape(batch, channels, sh, sw, rows, columns).transpose(0, 1, 4, 2, 5, 3)
    padded = padded.reshape(batch, channels, sh * rows, sw * columns)
    kept_h, kept_w = min(height, sh * rows - ph), min(width, sw * columns - pw)
    if (kept_h, kept_w) == (height, width):
        return numpy.ascontiguousarray(padded[:, :, ph:ph + height, pw:pw + width])
    grad_x = _recycled.zeros(numpy, x_shape, grad_x_s2d.dtype)   # rows and columns X' never held
    grad_x[:, :, :kept_h, :kept_w] = padded[:, :, ph:ph + kept_h, pw:pw + kept_w]
    return grad_x


def rearrange_weight(weight, stride):
    """W' (O, C/G*sh*sw, KA, KB): W'[o, (c, r, t), a, b] = W[o, c, sh*a + r, sw*b + t], 0 past the kernel."""
    out_channels, channels, kh, kw = weight.shape
    sh, sw = stride
    ka, kb = _blocks(kh, sh), _blocks(kw, sw)
    padded = numpy.zeros((out_channels, channels, sh * ka, sw * kb), dtype=weight.dtype)
    padded[:, :, :kh, :kw] = weight
    phases = padded.reshape(out_channels, channels, ka, sh, kb, sw).transpose(0, 1, 3, 5, 2, 4)
    return numpy.ascontiguousarray(phases).reshape(out_channels, channels * sh * sw, ka, kb)


def weight_gradient_back(grad_weight_s2d, weight_shape, stride):
    """The adjoint of :func:`rearrange_weight`: dW (O, C/G, kh, kw) from dW' (padded taps dropped)."""
    out_channels, channels, kh, kw = weight_shape
    sh, sw = stride
    _, _, ka, kb = grad_weight_s2d.shape
    taps = grad_weight_s2d.reshape(out_channels, channels, sh, sw, ka, kb).transpose(0, 1, 4, 2, 5, 3)
    taps = taps.reshape(out_channels, channels, sh * ka, sw * kb)
    return numpy.ascontiguousarray(taps[:, :, :kh, :kw])


# ------------------------------------------------------------------ forward and backward
def _rearranged_input(x, stride, padding, x_shape_s2d):
    """X' in reused scratch memory: a fresh 40 MB array (conv1 at batch 64) cost as much in page
    faults as the copy itself.  Valid until the next call (Winograd only reads it)."""
    return space_to_depth(x, stride, padding, *x_shape_s2d[2:],
                          out=scratch("space_to_depth", x_shape_s2d, x.dtype))


def forward(x, weight, bias, stride, padding, groups=1):
    """y = conv2d(x, weight, stride, padding) + bias through the stride-1 form (NumPy arrays, validated)."""
    x_shape_s2d, _ = transformed_shapes(x.shape, weight.shape, stride, padding)
    x_s2d = _rearranged_input(x, stride, padding, x_shape_s2d)
    return conv2d_winograd.winograd_conv2d_forward(x_s2d, rearrange_weight(weight, stride), bias, (0, 0), groups)


def backward(grad_output, x, weight, stride, padding, groups=1, need_input_grad=True, need_weight_grad=True):
    """``(grad_input or None, grad_weight or None)`` of :func:`forward` (the bias gradient is dy's sum)."""
    x_shape_s2d, _ = transformed_shapes(x.shape, weight.shape, stride, padding)
    x_s2d = _rearranged_input(x, stride, padding, x_shape_s2d)   # recomputed: cheaper than keeping it
    grad_x_s2d, grad_weight_s2d = conv2d_winograd.winograd_conv2d_backward(
        grad_output, x_s2d, rearrange_weight(weight, stride), (0, 0), groups,
        need_input_grad=need_input_grad, need_weight_grad=need_weight_grad)
    grad_input = depth_to_space(grad_x_s2d, x.shape, stride, padding) if need_input_grad else None
    grad_weight = weight_gradient_back(grad_weight_s2d, weight.shape, stride) if need_weight_grad else None
    return grad_input, grad_weight
