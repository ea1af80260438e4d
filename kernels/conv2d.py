r"""2-D convolution as im2col + GEMM, forward and backward.

The formula
-----------
For an input x of shape (N, C, H, W), a weight of shape (O, C/G, kh, kw)
(PyTorch's layout; G = ``groups``), a bias of shape (O,), stride s, padding p
and dilation d, output channel o of group g = o // (O/G) sees only the input
channels of its group, c = g*C/G + c':

    y[n, o, oh, ow] = b[o] + sum_{c' < C/G, i < kh, j < kw}
                      W[o, c', i, j] * x[n, g*C/G + c', oh*sh - ph + i*dh, ow*sw - pw + j*dw]

(x reads zero outside the image), with OH = floor((H + 2ph - dh(kh-1) - 1)/sh) + 1
and likewise OW.  As in every deep-learning framework this is a
cross-correlation: the kernel is not flipped.

As a matrix product
-------------------
``im2col`` (see ``im2col.py``) copies every receptive field into a column:
cols has shape (C*kh*kw, N*OH*OW) and cols[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow]
is the x value in the sum above.  Write K = C/G*kh*kw, M = N*OH*OW, and view

    W_g    = weight[g*O/G:(g+1)*O/G].reshape(O/G, K)     (a free reshape)
    cols_g = rows [g*K, (g+1)*K) of cols                  (contiguous, free)

Then, one GEMM per group,

    Y_g = W_g @ cols_g            (O/G, K) @ (K, M) -> (O/G, M)
    y[n, o, oh, ow] = Y[o, (n*OH + oh)*OW + ow] + b[o]

The groups are exactly AlexNet's two-GPU split (groups=2): each half of the
filters is a separate GEMM over its own half of the channels.  Y comes out as
(O, N, OH, OW); one pass transposes it to (N, O, OH, OW) and adds the bias.

The backward pass
-----------------
Given dY = dL/dy (N, O, OH, OW), rearranged as the (O, M) matrix dY_mat with
dY_mat[o, (n*OH + oh)*OW + ow] = dY[n, o, oh, ow], and its group blocks dY_g:

* bias: b[o] is added to every output of channel o, so
      db[o] = sum_{n, oh, ow} dY[n, o, oh, ow].
* weight: Y_g = W_g @ cols_g is linear in W_g with dY_g[o, m] = dL/dY_g[o, m], so
      dL/dW_g[o, k] = sum_m dY_g[o, m] * cols_g[k, m],   i.e.   dW_g = dY_g @ cols_g^T,
  one GEMM per group that also sums over every image and pixel (the sum over m).
* input: likewise dL/dcols_g = W_g^T @ dY_g (K, M).  Every column entry is a copy
  of one input pixel (or of the zero padding), so by the chain rule a pixel's
  gradient is the sum of the gradients of all entries copied from it; that
  summation is col2im, the adjoint of im2col:
      dx = col2im(W^T @ dY_mat)     (group by group into the rows of dcols).

Winograd for small stride-1 kernels
-----------------------------------
On the CPU, stride-1 undilated convolutions with 2x2 to 5x5 kernels, at least
16 channels per group and at least 700 output pixels per call (AlexNet's conv2 from
batch 1 and conv3-conv5 from batch 5, VGG's layers, ResNet's from batch 1 on 28 x 28) go through
``conv2d_winograd.py`` instead, which needs 2.4-4.6x fewer multiplications on
AlexNet's layers; ``set_algorithm`` forces im2col + GEMM everywhere.

Strided convolutions whose stride-1 rewriting Winograd takes (AlexNet's conv1:
11x11 at stride 4 becomes 3x3 at stride 1 on a 48-channel space-to-depth
input) go through ``conv2d_space_to_depth.py``: no 9.5x-the-input column matrix,
and 4-5x fewer multiplications.

1x1 convolutions as a plain GEMM
--------------------------------
With a 1x1 kernel, no padding and no dilation every receptive field is one
pixel, so cols would be x itself, rearranged: im2col would only copy.  Such a
convolution (ResNet's and GoogLeNet's bottlenecks and projections, VGG-C's
1x1 layers) is computed straight from x in its (N, C, H*W) layout,

    y[n] = W @ x[n]         (O, C) @ (C, H*W) -> (O, H*W), one GEMM per image (and group)

which lands in y's own (N, O, H, W) layout with no transposing copy either.
Backward: dx[n] = W^T @ dy[n], and dW = sum_n dy[n] @ x[n]^T (on the CPU accumulated
image by image as its transpose, x[n] @ dy[n]^T, the orientation OpenBLAS runs fast).  A stride s
reads every s-th pixel: x[:, :, ::s, ::s] goes in, and dx is zero on the
pixels that were skipped.

Which algorithm ran is recorded in what forward saves, so backward always
differentiates the computation that forward actually did.

Memory: a chunk of images at a time
-----------------------------------
The column matrix is large (about kh*kw/stride^2 times the input: 281 MB for
AlexNet's conv1, 448 MB for conv2 at batch 64 in float32), while x is small, so
the forward pass saves x, not cols, and the backward pass runs im2col again
(a memory-bound copy, much cheaper than the GEMMs).

On the CPU neither pass builds the full-batch column matrix either.  Because
the columns are ordered image-slowest, the columns of images [n0, n1) are the
contiguous block [n0*OH*OW, n1*OH*OW) of the full matrix, and they are exactly
``im2col(x[n0:n1])``.  Every formula above is a sum over, or a map of, such
column blocks, so the batch is processed in chunks of images whose column block
is about ``_scratch.CHUNK_BYTES`` (128 MiB).  The size is a
trade-off: on one thread chunks of 32 MiB already run as fast as the whole
batch, but on two threads each chunk's im2col and GEMMs are separate parallel
regions that end in a synchronisation, and on a busy machine (another process
on one of the two cores) 32 MiB chunks made the forward pass up to 1.5-2x
slower than one full-batch chunk; fewer, larger chunks lose less.  128 MiB
keeps the training step's peak memory near PyTorch's while taking most of the
gain of larger chunks (the timings: benchmarks/README.md, "Measurements behind the design"):

* forward: im2col the chunk, Y_g = W_g @ cols_g, transpose that block into
  y[n0:n1] (adding the bias); a chunk of one image (batch 1, or images so large
  that one fills a chunk) needs no transpose, so its GEMMs write into y itself;
* backward: dW and db are sums over m, so they are accumulated chunk by chunk;
  a chunk's dcols only reach the pixels of its own images, so col2im writes
  grad_input[n0:n1] directly.

The chunk's column matrix and its product (Y, or dY in the (O, M) layout) live
in a per-thread scratch buffer that is reused from call to call: allocating
fresh megabytes on every call costs page faults that are as slow as the im2col
copy itself.  With chunks that scratch is under 200 MiB (conv2's full-batch column matrix alone
would be 427 MiB, kept alive between calls).  In the backward pass
the same buffer holds cols for dW and is then overwritten by dcols for dx.  The
GPU path runs the same code with the whole batch as one chunk (CuPy's memory
pool already recycles allocations, and a GPU wants the largest launches).
"""
import contextlib
import os
import threading
from typing import NamedTuple

import numpy

from tinynet.backend import get_array_module

from ._checks import check_floating
from . import _recycled
from . import _scratch as scratch_memory
from ._scratch import release_scratch_memory, scratch  # noqa: F401  (re-exported)
from . import conv2d_space_to_depth, conv2d_winograd
from ._paths import device_paths
from .im2col import col2im, im2col_into, window_geometry

_OP = "conv2d"


# ------------------------------------------------------------------ which algorithm
_ALGORITHMS = ("auto", "im2col", "winograd")


class _AlgorithmChoice(threading.local):
    """The algorithm setting of one thread; every thread starts from TINYNET_CONV_ALGORITHM."""

    def __init__(self):
        self.name = os.environ.get("TINYNET_CONV_ALGORITHM", "auto")


_choice = _AlgorithmChoice()


def set_algorithm(name):
    """Choose how this thread computes convolutions; returns the previous choice.

    * ``"auto"`` (default): 1x1 unpadded undilated convolutions as plain GEMMs (see above);
      on the CPU, Winograd F(m, r) (``conv2d_winograd.py``) where it applies and pays --
      float32/float64, stride 1, undilated square 2x2 to 5x5 kernels, at least 16 channels
      per group and 700 output pixels per call (``conv2d_winograd.supports``); im2col + GEMM
      everywhere else;
    * ``"im2col"``: im2col + GEMM always (the textbook algorithm, and the most accurate);
    * ``"winograd"``: as ``"auto"``, but Winograd (after space to depth, for strided layers it
      turns into Winograd ones) wherever the layer's shape allows it, whatever the batch and image
      size: a small forward pass then runs the kernels that a large batch of the same network
      runs (the training loop's crop-size check uses it so that it compiles nothing the first
      training step does not need).

    The GPU path never uses Winograd.  The environment variable ``TINYNET_CONV_ALGORITHM``
    sets every thread's initial choice; :func:`use_algorithm` changes it for a ``with`` block.
    """
    if name not in _ALGORITHMS:
        raise ValueError(f"{_OP}: algorithm must be one of {_ALGORITHMS}, got {name!r}")
    previous, _choice.name = _choice.name, name
    return previous


def get_algorithm():
    """This thread's choice: ``"auto"``, ``"im2col"`` or ``"winograd"`` (see :func:`set_algorithm`)."""
    return _choice.name


@contextlib.contextmanager
def use_algorithm(name):
    """``with use_algorithm("im2col"): ...`` -- this thread's choice inside the block only."""
    previous = set_algorithm(name)
    try:
        yield
    finally:
        _choice.name = previous


def choose_algorithm(x, weight_shape, stride, padding, dilation, groups):
    """``"pointwise"``, ``"winograd"``, ``"space_to_depth"`` or ``"im2col"``: what forward will run
    (and backward follow)."""
    if _choice.name not in _ALGORITHMS:
        raise ValueError(f"TINYNET_CONV_ALGORITHM must be one of {_ALGORITHMS}, got {_choice.name!r}")
    if _choice.name == "im2col":
        return "im2col"
    if tuple(weight_shape[2:]) == (1, 1) and tuple(padding) == (0, 0) and tuple(dilation) == (1, 1):
        return "pointwise"
    # Winograd is a CPU path; float16 and other types stay on im2col: the transforms want float32/64
    if get_array_module(x) is numpy and x.dtype in (numpy.float32, numpy.float64):
        any_size = _choice.name == "winograd"
        if conv2d_winograd.supports(x.shape, weight_shape, stride, padding, dilation, groups,
                                    any_size=any_size):
            return "winograd"
        if conv2d_space_to_depth.supports(x.shape, weight_shape, stride, padding, dilation, groups,
                                          any_size=any_size):
            return "space_to_depth"
    return "im2col"


class _Saved(NamedTuple):
    """What forward keeps for backward: x, not the columns (see Memory), and every choice it made."""

    x: object
    weight: object
    has_bias: bool
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    algorithm: str


# ------------------------------------------------------------------ scratch memory
def _scratch(xp, slot, shape, dtype):
    """Temporary array for use inside one call: reused CPU scratch memory (``_scratch.py``);
    on the GPU a plain allocation (CuPy's memory pool already recycles them)."""
    if xp is numpy:
        return scratch(slot, shape, dtype)
    return xp.empty(shape, dtype=dtype)


# ------------------------------------------------------------------ checks
def _check_arguments(x, weight, bias, stride, padding, dilation, groups):
    if x.ndim != 4:
        raise ValueError(f"{_OP}: expected a 4-D input of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(
            f"{_OP}: expected a 4-D weight of shape (out_channels, in_channels/groups, kh, kw), "
            f"got shape {tuple(weight.shape)}")
    check_floating(_OP, x)
    check_floating(_OP, weight, "weight")
    if weight.dtype != x.dtype:
        raise ValueError(f"{_OP}: weight dtype {weight.dtype} differs from input dtype {x.dtype}")
    groups_int = int(groups)
    if groups_int != groups or groups_int < 1:
        raise ValueError(f"{_OP}: groups must be a positive integer, got {groups!r}")
    groups = groups_int
    batch, channels, height, width = x.shape
    out_channels, channels_per_group = weight.shape[0], weight.shape[1]
    if channels % groups != 0:
        raise ValueError(
            f"{_OP}: groups={groups} must divide the input channels, got {channels} input channels "
            f"(input shape {tuple(x.shape)})")
    if out_channels % groups != 0:
        raise ValueError(
            f"{_OP}: groups={groups} must divide the output channels, got {out_channels} output "
            f"channels (weight shape {tuple(weight.shape)})")
    if channels_per_group * groups != channels:
        raise ValueError(
            f"{_OP}: input has {channels} channels but weight of shape {tuple(weight.shape)} with "
            f"groups={groups} expects {channels_per_group * groups} "
            f"(= weight.shape[1] {channels_per_group} x groups {groups}); "
            f"expected weight shape ({out_channels}, {channels // groups}, "
            f"{weight.shape[2]}, {weight.shape[3]})")
    if bias is not None:
        if tuple(bias.shape) != (out_channels,):
            raise ValueError(
                f"{_OP}: expected a bias of shape ({out_channels},) (one per output channel), "
                f"got shape {tuple(bias.shape)}")
        if bias.dtype != x.dtype:
            raise ValueError(f"{_OP}: bias dtype {bias.dtype} differs from input dtype {x.dtype}")
    kernel = (weight.shape[2], weight.shape[3])
    return (groups,) + window_geometry(_OP, x.shape, kernel, stride, padding, dilation)


# ------------------------------------------------------------------ chunks of images
def _images_per_chunk(xp, batch, column_bytes_per_image):
    """How many images go through im2col + GEMM together (the whole batch on the GPU)."""
    if xp is not numpy:
        return batch
    return scratch_memory.images_per_chunk(batch, column_bytes_per_image)


# ------------------------------------------------------------------ forward
def forward(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, weight) + bias.

    x (N, C, H, W); weight (O, C/groups, kh, kw); bias (O,) or None; stride,
    padding, dilation: int or (height, width) pair.  Returns ``(y, saved)``: y of
    shape (N, O, OH, OW) and dtype of x, and the opaque ``saved`` that
    :func:`backward` needs (x, the weight, the settings and the algorithm chosen).
    """
    return _forward(x, weight, bias, stride, padding, dilation, groups, keep_filters=False)


def inference(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """y alone, for a forward pass that records no graph: :func:`forward`'s result, except that
    the Winograd path reuses the filters it transformed while the weight is unchanged
    (``conv2d_winograd.kept_filters``)."""
    return _forward(x, weight, bias, stride, padding, dilation, groups, keep_filters=True)[0]


def _forward(x, weight, bias, stride, padding, dilation, groups, keep_filters):
    groups, kernel, stride, padding, dilation, (out_h, out_w) = _check_arguments(
        x, weight, bias, stride, padding, dilation, groups)
    xp = get_array_module(x, weight, bias)
    x = xp.ascontiguousarray(x)                  # so that x[n0:n1] is a contiguous chunk
    algorithm = choose_algorithm(x, weight.shape, stride, padding, dilation, groups)
    saved = _Saved(x, weight, bias is not None, stride, padding, dilation, groups, algorithm)
    if algorithm == "pointwise":
        return _pointwise_forward(xp, x, weight, bias, stride, groups), saved
    if algorithm == "winograd":
        return conv2d_winograd.winograd_conv2d_forward(x, weight, bias, padding, groups,
                                                       keep_filters=keep_filters), saved
    if algorithm == "space_to_depth":
        return conv2d_space_to_depth.forward(x, weight, bias, stride, padding, groups), saved
    batch = x.shape[0]
    out_channels = weight.shape[0]
    rows_per_group = weight.shape[1] * kernel[0] * kernel[1]          # K = C/G*kh*kw
    filters_per_group = out_channels // groups
    pixels = out_h * out_w
    weight_matrices = weight.reshape(groups, filters_per_group, rows_per_group)
    chunk = _images_per_chunk(xp, batch, groups * rows_per_group * pixels * x.dtype.itemsize)

    y = _recycled.empty(xp, (batch, out_channels, out_h, out_w), x.dtype)
    for first in range(0, batch, chunk):
        last = min(first + chunk, batch)
        images = last - first
        columns = images * pixels                                      # this chunk's share of M

        # the chunk's columns = columns [first*OH*OW, last*OH*OW) of the full matrix
        cols = _scratch(xp, "columns", (groups, rows_per_group, columns), x.dtype)
        im2col_into(x[first:last], cols.reshape(groups * rows_per_group, columns),
                    kernel, stride, padding, dilation)

        if images == 1:
            # one image: its (O, OH*OW) block of y is already the product's layout
            y_image = y[first].reshape(groups, filters_per_group, pixels)
            for group in range(groups):
                xp.matmul(weight_matrices[group], cols[group], out=y_image[group])
            if bias is not None:
                xp.add(y_image, bias.reshape(groups, filters_per_group, 1), out=y_image)
            continue

        # product[o, (n*OH + oh)*OW + ow]: one GEMM per group (AlexNet's two-GPU split)
        product = _scratch(xp, "product", (groups, filters_per_group, columns), x.dtype)
        for group in range(groups):
            xp.matmul(weight_matrices[group], cols[group], out=product[group])

        # (O, n, OH*OW) -> (n, O, OH*OW) into y's rows of this chunk, adding the bias in the same pass
        product_nchw = product.reshape(out_channels, images, pixels).transpose(1, 0, 2)
        y_chunk = y[first:last].reshape(images, out_channels, pixels)
        if bias is None:
            y_chunk[...] = product_nchw
        else:
            xp.add(product_nchw, bias.reshape(out_channels, 1), out=y_chunk)
    return y, saved


# ------------------------------------------------------------------ backward
def backward(grad_output, saved, needs_input_grad=(True, True, True)):
    """Gradients ``(grad_input, grad_weight, grad_bias)`` of the loss (see the module docstring).

    Each is None where ``needs_input_grad`` does not ask for it; grad_bias is None
    when the forward pass had no bias.  The algorithm is the one forward used.
    """
    needs = tuple(needs_input_grad) + (True,) * (3 - len(needs_input_grad))
    need_input_grad, need_weight_grad = bool(needs[0]), bool(needs[1])
    x, weight, has_bias, stride, padding, dilation, groups, algorithm = saved
    has_bias = has_bias and bool(needs[2])
    xp = get_array_module(grad_output, x)
    batch = x.shape[0]
    out_channels = weight.shape[0]
    kernel = (weight.shape[2], weight.shape[3])
    _, _, _, _, (out_h, out_w) = window_geometry(_OP, x.shape, kernel, stride, padding, dilation)
    expected = (batch, out_channels, out_h, out_w)
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"{_OP}: expected grad_output of shape {expected}, got shape {tuple(grad_output.shape)}")
    if algorithm == "pointwise":
        return _pointwise_backward(xp, grad_output, x, weight, has_bias, stride, groups,
                                   need_input_grad, need_weight_grad)
    if algorithm == "winograd":
        grad_input, grad_weight = conv2d_winograd.winograd_conv2d_backward(
            grad_output, x, weight, padding, groups,
            need_input_grad=need_input_grad, need_weight_grad=need_weight_grad)
        grad_bias = grad_output.sum(axis=(0, 2, 3), dtype=x.dtype) if has_bias else None
        return grad_input, grad_weight, grad_bias
    if algorithm == "space_to_depth":
        grad_input, grad_weight = conv2d_space_to_depth.backward(
            grad_output, x, weight, stride, padding, groups,
            need_input_grad=need_input_grad, need_weight_grad=need_weight_grad)
        grad_bias = grad_output.sum(axis=(0, 2, 3), dtype=x.dtype) if has_bias else None
        return grad_input, grad_weight, grad_bias
    rows_per_group = weight.shape[1] * kernel[0] * kernel[1]
    filters_per_group = out_channels // groups
    pixels = out_h * out_w
    weight_matrices = weight.reshape(groups, filters_per_group, rows_per_group)
    chunk = _images_per_chunk(xp, batch, groups * rows_per_group * pixels * x.dtype.itemsize)

    grad_bias = xp.zeros(out_channels, dtype=x.dtype) if has_bias else None
    # dW is accumulated transposed, as dW_g^T = sum over chunks of cols_g @ dY_g^T (see below)
    grad_weight_t = None
    if need_weight_grad:
        grad_weight_t = xp.empty((groups, rows_per_group, filters_per_group), dtype=x.dtype)
    grad_input = _recycled.empty(xp, x.shape, x.dtype) if need_input_grad else None

    for first in range(0, batch, chunk):
        last = min(first + chunk, batch)
        images = last - first
        columns = images * pixels

        # dY of the chunk as the (O, n*OH*OW) matrix of the GEMMs (one transposing copy)
        grad_matrix = _scratch(xp, "product", (out_channels, images, pixels), x.dtype)
        grad_matrix[...] = grad_output[first:last].reshape(images, out_channels, pixels).transpose(1, 0, 2)
        grad_matrix = grad_matrix.reshape(groups, filters_per_group, columns)
        if has_bias:
            # summing contiguous rows of the transposed copy: fast, and pairwise-accurate
            grad_bias += grad_matrix.reshape(out_channels, columns).sum(axis=1)
        if not (need_input_grad or need_weight_grad):
            continue

        cols = _scratch(xp, "columns", (groups, rows_per_group, columns), x.dtype)
        if need_weight_grad:
            # recompute the chunk's columns rather than keep them from the forward pass (see Memory)
            im2col_into(x[first:last], cols.reshape(groups * rows_per_group, columns),
                        kernel, stride, padding, dilation)
            for group in range(groups):
                # dW_g = dY_g @ cols_g^T, computed as its transpose cols_g @ dY_g^T: with the
                # transposed operand second, OpenBLAS (SkylakeX kernel) ran conv1's dW an order
                # of magnitude slower on 2 threads; this orientation is fast and stable.
                if first == 0:
                    xp.matmul(cols[group], grad_matrix[group].T, out=grad_weight_t[group])
                else:
                    partial = _scratch(xp, "weight", (rows_per_group, filters_per_group), x.dtype)
                    xp.matmul(cols[group], grad_matrix[group].T, out=partial)
                    grad_weight_t[group] += partial

        if need_input_grad:
            grad_cols = cols                            # cols are no longer needed: reuse the buffer
            for group in range(groups):
                xp.matmul(weight_matrices[group].T, grad_matrix[group], out=grad_cols[group])
            # the chunk's dcols only reach its own images: col2im straight into grad_input[first:last]
            col2im(grad_cols.reshape(groups * rows_per_group, columns), (images,) + tuple(x.shape[1:]),
                   kernel, stride, padding, dilation, out=grad_input[first:last])

    grad_weight = None
    if need_weight_grad:
        # (G, K, O/G) -> (G, O/G, K) = (O, C/G, kh, kw): one small weight-sized copy
        grad_weight = xp.ascontiguousarray(grad_weight_t.transpose(0, 2, 1)).reshape(weight.shape)
    return grad_input, grad_weight, grad_bias


# ------------------------------------------------------------------ 1x1 convolutions
def _pointwise_forward(xp, x, weight, bias, stride, groups):
    """y[n] = W @ x[n] per group, for a 1x1 kernel without padding or dilation (see above)."""
    if tuple(stride) != (1, 1):
        x = xp.ascontiguousarray(x[:, :, ::stride[0], ::stride[1]])
    batch, channels, height, width = x.shape
    out_channels = weight.shape[0]
    weight_groups = weight.reshape(groups, out_channels // groups, channels // groups)
    # (G, O/G, C/G) @ (N, G, C/G, H*W) -> (N, G, O/G, H*W): already y's (N, O, H, W) order.  The
    # result goes into one preallocated array: a fresh result per image costs page faults.
    y = _recycled.empty(xp, (batch, out_channels, height, width), x.dtype)
    xp.matmul(weight_groups, x.reshape(batch, groups, channels // groups, height * width),
              out=y.reshape(batch, groups, out_channels // groups, height * width))
    if bias is not None:
        y += bias.reshape(1, out_channels, 1, 1)
    return y


def _pointwise_weight_gradient_cpu(grad_groups, x_groups, grad_weight_t):
    """dW_g^T = sum_n x[n]_g @ dy[n]_g^T, image by image into one buffer (the orientation OpenBLAS
    runs steadily fast, as for im2col's dW), without a transposing copy of x or dy."""
    partial = numpy.empty(grad_weight_t.shape[1:], dtype=grad_weight_t.dtype)
    for group in range(grad_weight_t.shape[0]):
        for image in range(x_groups.shape[0]):
            target = grad_weight_t[group] if image == 0 else partial
            numpy.matmul(x_groups[image, group], grad_groups[image, group].T, out=target)
            if image:
                grad_weight_t[group] += partial


def _pointwise_weight_gradient_gpu(grad_groups, x_groups, grad_weight_t):
    """The same sum as one GEMM per group (cuBLAS wants few, large launches)."""
    xp = get_array_module(grad_groups)
    for group in range(grad_weight_t.shape[0]):
        grad_weight_t[group] = xp.tensordot(x_groups[:, group], grad_groups[:, group], axes=([0, 2], [0, 2]))


_pointwise_weight_gradient = device_paths(_pointwise_weight_gradient_cpu, _pointwise_weight_gradient_gpu)


def _pointwise_backward(xp, grad_output, x, weight, has_bias, stride, groups, need_input_grad,
                        need_weight_grad):
    """dx[n] = W^T @ dy[n] (zero on the pixels a stride skipped), dW = sum_n dy[n] @ x[n]^T."""
    strided = tuple(stride) != (1, 1)
    sampled = xp.ascontiguousarray(x[:, :, ::stride[0], ::stride[1]]) if strided else x
    batch, channels, height, width = sampled.shape
    out_channels = weight.shape[0]
    per_group_in, per_group_out = channels // groups, out_channels // groups
    grad_groups = xp.ascontiguousarray(grad_output).reshape(batch, groups, per_group_out, height * width)
    grad_input = grad_weight = grad_bias = None
    if need_input_grad:
        weight_t = weight.reshape(groups, per_group_out, per_group_in).transpose(0, 2, 1)
        grad_sampled = _recycled.empty(xp, (batch, channels, height, width), x.dtype)
        xp.matmul(weight_t, grad_groups, out=grad_sampled.reshape(batch, groups, per_group_in, height * width))
        if strided:
            grad_input = _recycled.zeros(xp, x.shape, x.dtype)
            grad_input[:, :, ::stride[0], ::stride[1]] = grad_sampled
        else:
            grad_input = grad_sampled
    if need_weight_grad:
        grad_weight_t = xp.empty((groups, per_group_in, per_group_out), dtype=x.dtype)
        _pointwise_weight_gradient(grad_groups, sampled.reshape(batch, groups, per_group_in, height * width),
                                   grad_weight_t)
        grad_weight = xp.ascontiguousarray(grad_weight_t.transpose(0, 2, 1)).reshape(weight.shape)
    if has_bias:
        grad_bias = grad_output.sum(axis=(0, 2, 3), dtype=x.dtype)
    return grad_input, grad_weight, grad_bias


# ------------------------------------------------------------------ positional spellings
def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """:func:`forward` with positional settings (the kernel tests' and benchmarks' spelling)."""
    return forward(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv2d_backward(grad_output, saved, need_input_grad=True, need_weight_grad=True):
    """:func:`backward` with the two expensive gradients as flags (grad_bias whenever forward had a bias)."""
    return backward(grad_output, saved, (need_input_grad, need_weight_grad, True))
