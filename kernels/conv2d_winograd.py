r"""2-D convolution by Winograd's minimal filtering, F(m x m, r x r): stride 1, forward and backward.

Why another convolution algorithm
---------------------------------
im2col + GEMM (``conv2d.py``) spends r*r multiplications on every output pixel
of every (input channel, output channel) pair: 9 for a 3x3 kernel, 25 for 5x5.
Winograd's algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016) computes an m x m block of outputs from an (m+r-1) x (m+r-1)
block of input with only (m+r-1)^2 multiplications per channel pair:

    kernel   tile F(m, r)   multiplications per output   saving
    3x3      F(2, 3)        16/4  = 4      (instead of 9)    2.25x
    3x3      F(3, 3)        25/9  = 2.78   (instead of 9)    3.24x   AlexNet conv3-5 (13 x 13)
    3x3      F(4, 3)        36/16 = 2.25   (instead of 9)    4x      VGG, ResNet
    5x5      F(2, 5)        36/4  = 9      (instead of 25)   2.78x
    5x5      F(3, 5)        49/9  = 5.44   (instead of 25)   4.59x   AlexNet conv2 (27 x 27)

(before the tiles that stick out of the output are counted: 13 x 13 needs
5 x 5 tiles of 3, computing 15 x 15 outputs).

Those multiplications are still one big GEMM per tile position, so the saving
reaches the GEMMs that dominate a CNN's time, and the transforms around them
are memory-bound passes that replace im2col (the transformed input is
(m+r-1)^2/m^2 times the input, im2col's columns r^2 times).

One dimension: F(m, r)
----------------------
Let alpha = m + r - 1.  The correlation of an input strip d (alpha values) with
a filter g (r values), y_i = sum_k g_k d_{i+k} for i < m, can be written as

    y = A^T [ (G g) * (B^T d) ]        (* is elementwise; A^T m x alpha, G alpha x r, B^T alpha x alpha)

Where this comes from: the *product of polynomials* s(x) = g(x) h(x) (g of
degree r-1, h of degree m-1, s of degree alpha-1) is fixed by s at alpha
points.  Toom-Cook evaluates g and h at alpha-1 numbers p_j and at "infinity"
(the leading coefficient), multiplies the alpha values pairwise -- the only
multiplications that involve data -- and interpolates s back:
s = V^{-1} [ (E_r g) * (E_m h) ], where E_k (alpha x k) holds the rows
(1, p_j, p_j^2, ..., p_j^{k-1}) and a last row (0, ..., 0, 1), and V = E_alpha.
Polynomial multiplication is a linear map of h, s = T(g) h with T(g)[i+k, i] = g_k,
and the correlation above is exactly its transpose: y = T(g)^T d.  Transposing
the bilinear algorithm gives

    A^T = E_m^T,   G = E_r,   B^T = (V^{-1})^T.

``transform_matrices(m, r)`` builds the three matrices this way, exactly in
rational arithmetic, with the points 0, 1, -1, 1/2, -1/2, 2, -2, 1/3, ... (numbers
near 1 keep float32 rounding small), then moves a scale factor from each row
of B^T to the same row of G so that B^T has coprime integer entries.  For
F(2, 3) this reproduces the matrices of Lavin & Gray (up to signs):

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, 1]]

Two dimensions and many channels
--------------------------------
Nesting the 1-D algorithm along rows and columns, an m x m output tile is

    Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A        (d_c: the alpha x alpha input tile of channel c)

Write U[a, b, c, o] = (G g_{o,c} G^T)[a, b] (the filters, transformed once per
call) and V[a, b, t, c] = (B^T d_{c,t} B)[a, b] for every tile t = (n, th, tw)
of every image.  The sum over channels is then, for each of the alpha^2
positions (a, b), a matrix product

    M[a, b] = V[a, b] @ U[a, b]         (T, C) @ (C, O) -> (T, O)     (one GEMM per group)

and Y_{o,t} = A^T M[:, :, t, o] A.  Output tiles that stick out past the edge
of the output are computed on zero-padded input and cropped.  (With groups,
each group's channels form their own V, U and M blocks.)  The arrays are V
(alpha, alpha, G, T, C/G), M (alpha, alpha, G, T, O/G) and U stored as
(alpha, alpha, G, O/G, C/G), the weight's own (output, input) order: the GEMMs
read each U[a, b] block transposed, which BLAS does without a copy, and the
filter transform needs no transposing copy of the weight (``_transform_filters``).
The alpha^2 G products are one stack of GEMMs; at batch 1 they are small enough
that OpenBLAS runs each on one core, and ``_gemm_stack.py`` spreads them over
the CPU threads (ResNet's 64-channel layer at 56 x 56: 1.10 -> 0.93 ms).

Channels are the last, contiguous axis of V and M ("channels last"), although
x and y are NCHW: the tile transforms then run their arithmetic as loops over
hundreds of channels, where loops along a row of tiles would be as short as
the 5 tiles of a 13 x 13 image.

Backward pass
-------------
* dx: for stride 1, the gradient of a convolution with padding p is the
  convolution of dY, padded by r-1-p, with the filters flipped in space and
  with input and output channels swapped (W'[c, o, i, j] = W[o, c, r-1-i, r-1-j],
  group by group) -- so dx runs through this same forward algorithm.
* dW: Y is linear in U, with dL/dU[a,b,o,c] = sum_t (A dY_{o,t} A^T)[a, b] V[a, b, t, c]:
  transform each m x m tile of dY with A (the adjoint of the output
  transform), one GEMM per position (a, b) sums over all tiles, and the chain
  rule through U = G g G^T gives dg = G^T dU G.
* db: the sum of dY over images and pixels, as for any convolution.

Accuracy
--------
The transforms add and subtract values of different sizes, so float32 results
carry more rounding than im2col's.  Largest error relative to the largest
output, against float64, at AlexNet's layer shapes: im2col 4-6e-7, F(2, 3)
~1e-6, F(3, 3) 6-7e-6, F(4, 3) 1-2e-5, F(2, 5) and F(3, 5) 0.5-1.7e-5 (the tests
bound it at 1e-4).  cuDNN's and oneDNN's Winograd convolutions make the same
trade.  ``choose_tile`` keeps alpha <= 7 for this reason.

CPU only
--------
The tile transforms are numba loops, one task per row of tiles of one image.
The GPU path of ``conv2d`` keeps im2col + cuBLAS: Winograd there would need
CUDA transform kernels, and no GPU has been available to measure whether they
pay, so this module has none.
"""
import math
import threading
import weakref
from fractions import Fraction
from functools import lru_cache

import numpy

from tinynet.backend import get_array_module

from . import _recycled
from ._gemm_stack import matmul_stack
from ._numba import njit, parallel_tasks
from ._scratch import images_per_chunk, scratch


# ------------------------------------------------------------------ the transform matrices
def _interpolation_points(count):
    points = [Fraction(0)]
    k = 1
    while len(points) < count:
        for p in (Fraction(k), Fraction(-k), Fraction(1, k + 1), Fraction(-1, k + 1)):
            if len(points) < count and p not in points:
                points.append(p)
        k += 1
    return points[:count]


def _evaluation_matrix(points, columns):
    """Rows (1, p, p^2, ..., p^(columns-1)) for each point, then the row for 'infinity'."""
    rows = [[p ** k for k in range(columns)] for p in points]
    rows.append([Fraction(0)] * (columns - 1) + [Fraction(1)])
    return rows


def _inverse(matrix):
    """Exact inverse of a small square matrix of Fractions (Gauss-Jordan elimination)."""
    size = len(matrix)
    work = [list(row) + [Fraction(int(i == j)) for j in range(size)] for i, row in enumerate(matrix)]
    for col in range(size):
        pivot = next(r for r in range(col, size) if work[r][col] != 0)
        work[col], work[pivot] = work[pivot], work[col]
        scale = work[col][col]
        work[col] = [value / scale for value in work[col]]
        for r in range(size):
            if r != col and work[r][col] != 0:
                factor = work[r][col]
                work[r] = [a - factor * b for a, b in zip(work[r], work[col])]
    return [row[size:] for row in work]


@lru_cache(maxsize=None)
def _exact_matrices(m, r):
    alpha = m + r - 1
    points = _interpolation_points(alpha - 1)
    e_m = _evaluation_matrix(points, m)                     # alpha x m
    e_r = _evaluation_matrix(points, r)                     # alpha x r
    v_inverse = _inverse(_evaluation_matrix(points, alpha))  # alpha x alpha
    a_t = [[e_m[j][i] for j in range(alpha)] for i in range(m)]
    g = [list(row) for row in e_r]
    b_t = [[v_inverse[j][i] for j in range(alpha)] for i in range(alpha)]
    for row in range(alpha):
        # B^T[row] / s has coprime integer entries; G[row] * s keeps the product unchanged
        denominators = math.lcm(*(value.denominator for value in b_t[row]))
        numerators = math.gcd(*(value.numerator * denominators // value.denominator for value in b_t[row]))
        scale = Fraction(numerators, denominators)
        b_t[row] = [value / scale for value in b_t[row]]
        g[row] = [value * scale for value in g[row]]
    return a_t, g, b_t


def transform_matrices(m, r, dtype=numpy.float64):
    """(A^T, G, B^T) of F(m, r) as arrays of ``dtype``: shapes (m, alpha), (alpha, r), (alpha, alpha)."""
    return tuple(numpy.array([[float(v) for v in row] for row in matrix], dtype=dtype)
                 for matrix in _exact_matrices(int(m), int(r)))


# ------------------------------------------------------------------ tile transforms (CPU)
@njit(cache=True, nogil=True, inline="always")
def _weighted_rows(target, coefficients, terms, offset):
    """target[e] = sum_k coefficients[k] terms[k, offset + e] over the nonzero coefficients, in order.

    The first term is stored rather than added to a zero (the same values; a zero's sign may
    differ), which saves a pass over target: 10-40 % of a tile transform.
    """
    started = False
    for k in range(coefficients.shape[0]):
        coefficient = coefficients[k]
        if coefficient != 0:
            term = terms[k, offset:offset + target.shape[0]]
            if started:
                for e in range(target.shape[0]):
                    target[e] += coefficient * term[e]
            else:
                for e in range(target.shape[0]):
                    target[e] = coefficient * term[e]
                started = True
    if not started:
        for e in range(target.shape[0]):
            target[e] = 0


@njit(cache=True, nogil=True)
def _transform_tiles_tasks(x, left, step, pad_h, pad_w, tiles_h, tiles_w, out, first, last):
    """out[a, b, g, t, c'] = sum_{i,j < s} left[a, i] left[b, j] x[n, g*C/G + c', th*step - pad_h + i, tw*step - pad_w + j].

    x (n, C, H, W); left (alpha, s); out (alpha, alpha, G, n*tiles_h*tiles_w*C/G): the
    (alpha, alpha, G, tiles, C/G) array with its last two axes as one, t = (n*tiles_h + th)*tiles_w
    + tw (no reshape inside the kernel: its error paths cost 0.2-0.3 CPU-s of compiling).  Reads
    outside x are zero.  The input transform is left = B^T with s = alpha; the output-gradient
    transform is left = A with s = m.

    Each task takes one row of tiles of one image.  It first copies the s input
    rows it needs, for every channel, into a small channels-last buffer (a strided
    gather across channels, written contiguously), so that every step of the
    transform is a loop over channels.  Along i it fills ``half[a, j]`` with the
    row's tiles one after the other, channels contiguous: the order of the row's
    block ``out[a, b, 0, t0:t0 + tiles_w]``, so that with one group the sums along j
    run as one loop over tiles_w x C values (896 for ResNet's 64-channel layers)
    rather than one loop per tile.  numba's vectorised loop costs about as much to
    start as to run over 64 channels (timings: benchmarks/README.md, "Measurements
    behind the design"); where groups split the channels the sums along j
    still go tile by tile.
    """
    batch, channels, height, width = x.shape
    alpha, size = left.shape
    groups = out.shape[2]
    channels_per_group = channels // groups
    strip = (tiles_w - 1) * step + size              # input columns that a row of tiles touches
    rows = numpy.zeros((size, strip * channels), dtype=x.dtype)     # rows[i, col*C + c]
    half = numpy.empty((alpha, size, tiles_w * channels), dtype=x.dtype)
    # the second pass runs over a whole row of tiles where one group holds every channel, and
    # tile by tile otherwise (a group's channels are then not contiguous in half)
    segments, length = (1, tiles_w * channels) if groups == 1 else (tiles_w, channels_per_group)
    for task in range(first, last):
        n = task // tiles_h
        th = task % tiles_h
        for i in range(size):
            h = th * step - pad_h + i
            if 0 <= h < height:
                for w in range(max(0, -pad_w), min(width, strip - pad_w)):
                    # a strided gather across channels, written contiguously: the lines it
                    # reads stay in L1 for the next w, where writes across channels would not
                    target = rows[i, (w + pad_w) * channels:]
                    for c in range(channels):
                        target[c] = x[n, c, h, w]
            else:
                rows[i, :] = 0
        # along i: half[a, j, tw*C + c] = sum_i left[a, i] rows[i, tw*step + j, c]
        for a in range(alpha):
            for j in range(size):
                for tw in range(tiles_w):
                    _weighted_rows(half[a, j, tw * channels:(tw + 1) * channels], left[a], rows,
                                   (tw * step + j) * channels)
        # along j: out[a, b, g, t0 + tw, c'] = sum_j left[b, j] half[a, j, tw*C + g*C/G + c']
        first_tile = task * tiles_w
        for a in range(alpha):
            for b in range(alpha):
                for g in range(groups):
                    row_of_tiles = out[a, b, g, first_tile * channels_per_group:]
                    for segment in range(segments):
                        _weighted_rows(row_of_tiles[segment * length:(segment + 1) * length], left[b], half[a],
                                       segment * channels + g * channels_per_group)


def _transform_tiles_cpu(x, left, step, pad_h, pad_w, tiles_h, tiles_w, out):
    """``_transform_tiles_tasks`` over every row of tiles; out (alpha, alpha, G, tiles, C/G), contiguous."""
    alpha, _, groups = out.shape[:3]
    parallel_tasks(_transform_tiles_tasks, x.shape[0] * tiles_h, x, left, step, pad_h, pad_w, tiles_h,
                   tiles_w, out.reshape(alpha, alpha, groups, -1))


@njit(cache=True, nogil=True)
def _output_tiles_tasks(product, a_t, bias, y, first, last):
    """y[n, g*O/G + o', th*m + i, tw*m + j] = bias + (A^T product[:, :, g, t, o'] A)[i, j], cropped to y.

    product (alpha, alpha, G, n*tiles_h*tiles_w, O/G).  Organised like
    ``_transform_tiles_cpu``: one task per row of tiles of one image, the
    transform as loops over channels, the m x m results collected in a buffer
    that is then copied into y one contiguous output row at a time.
    """
    batch, out_channels, out_h, out_w = y.shape
    m, alpha = a_t.shape
    groups, filters_per_group = product.shape[2], product.shape[4]
    tiles_h = (out_h + m - 1) // m
    tiles_w = (out_w + m - 1) // m
    for task in range(first, last):
        n = task // tiles_h
        th = task % tiles_h
        half = numpy.empty((m, alpha, out_channels), dtype=y.dtype)
        rows = numpy.empty((m, tiles_w * m, out_channels), dtype=y.dtype)
        for tw in range(tiles_w):
            t = task * tiles_w + tw
            # along a: half[i, b] = sum_a A^T[i, a] product[a, b]
            for i in range(m):
                for b in range(alpha):
                    for o in range(out_channels):
                        half[i, b, o] = 0
                    for a in range(alpha):
                        coefficient = a_t[i, a]
                        if coefficient != 0:
                            for g in range(groups):
                                source = product[a, b, g, t]
                                for o in range(filters_per_group):
                                    half[i, b, g * filters_per_group + o] += coefficient * source[o]
            # along b: bias + sum_b A^T[j, b] half[i, b], into the tile's place in the row buffer
            for i in range(m):
                for j in range(m):
                    result = rows[i, tw * m + j]
                    for o in range(out_channels):
                        result[o] = bias[o]
                    for b in range(alpha):
                        coefficient = a_t[j, b]
                        if coefficient != 0:
                            for o in range(out_channels):
                                result[o] += coefficient * half[i, b, o]
        # channels-last buffer -> NCHW rows: strided reads that stay in L1, contiguous writes
        for i in range(min(m, out_h - th * m)):
            for o in range(out_channels):
                for w in range(out_w):
                    y[n, o, th * m + i, w] = rows[i, w, o]


def _output_tiles_cpu(product, a_t, bias, y):
    parallel_tasks(_output_tiles_tasks, y.shape[0] * (-(-y.shape[2] // a_t.shape[0])), product, a_t, bias, y)


# ------------------------------------------------------------------ filters
def _transform_filters(weight, g, groups, for_input_gradient=False, out=None):
    """The filters in the Winograd domain, U[a, b, grp, o', c'] = (G weight[grp*O/G + o', c'] G^T)[a, b],
    of shape (alpha, alpha, G, O/G, C/G): the weight's own (output, input) order.

    One GEMM does all of it: with kron(G, G)[a*alpha + b, i*r + j] = G[a, i] G[b, j],
    U flattened is kron(G, G) @ w^T where w = the weight as rows of r*r taps, read in
    place.  (The forward GEMMs read U[a, b] transposed, which BLAS does without a
    copy; a (C, O) layout would need a transposing copy of the weight, which took
    4.4 of the 14.9 ms for a 512x512 3x3 F(4, 3) transform, benchmarks/README.md.)

    ``for_input_gradient``: the filters of the input gradient, W'[c, o] = W[o, c]
    flipped in space (see Backward pass), read as (O/G, C/G) blocks without the
    transpose; the flip reverses the r*r taps, which is the same as reversing the
    columns of kron(G, G).  ``out``: where to write U (scratch memory for a call's
    own use), else a new array.
    """
    out_channels, channels, r, _ = weight.shape
    alpha = g.shape[0]
    kron = numpy.kron(g, g)
    if for_input_gradient:
        kron = numpy.ascontiguousarray(kron[:, ::-1])
    taps = weight.reshape(out_channels * channels, r * r)          # rows (grp, o', c')
    if out is not None:
        out = out.reshape(alpha * alpha, out_channels * channels)
    u = numpy.matmul(kron, taps.T, out=out)
    return u.reshape(alpha, alpha, groups, out_channels // groups, channels)


def _filter_gradient(grad_u, g):
    """dW[grp*O/G + o', c'] = G^T dU[:, :, grp, o', c'] G for dU of shape (alpha, alpha, G, O/G, C/G):
    the adjoint of ``_transform_filters``, whose rows are already the weight's order."""
    alpha, _, groups, filters_per_group, channels = grad_u.shape
    r = g.shape[1]
    grad_taps = grad_u.reshape(alpha * alpha, -1).T @ numpy.kron(g, g)       # rows (grp, o', c')
    return grad_taps.reshape(groups * filters_per_group, channels, r, r)


# ------------------------------------------------------------------ geometry
#: output tiles m tried for an r x r kernel; alpha = m + r - 1 stays <= 7 (float32 accuracy, see Accuracy)
_TILE_CANDIDATES = (2, 3, 4)
#: below this many channels per group the GEMMs are too thin for Winograd to pay
MIN_CHANNELS = 16
#: below this many output pixels per call (batch x OH x OW) the GEMMs are too short to pay.  Counted
#: in pixels, not tiles: one rule then fits every layer measured on 2 threads (timings:
#: benchmarks/README.md, "Measurements behind the design") -- Winograd won from 729 pixels
#: (AlexNet's conv2 at batch 1, 81 tiles of 3x3; ResNet's 28 x 28 layers at batch 1, 49 tiles of
#: 4x4) and lost at 676 and below (AlexNet's 13 x 13 layers up to batch 4, 100 tiles of 3x3)
MIN_PIXELS = 700


def supports(x_shape, weight_shape, stride, padding, dilation, groups, min_tiles=None, any_size=False):
    """True where F(m, r) applies and pays: square r x r kernel (r = 2..5), stride 1, dilation 1,
    padding < r, at least ``MIN_CHANNELS`` input and output channels per group, and at least
    ``MIN_PIXELS`` output pixels in the batch (read at the call) or, where ``min_tiles`` is given
    (the space-to-depth rewriting's own rule), that many output tiles.  ``any_size``: whatever the
    batch and image size (the layer's shape alone decides)."""
    batch, channels, height, width = x_shape
    out_channels, _, kh, kw = weight_shape
    if not (kh == kw and 2 <= kh <= 5 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and max(padding) < kh and channels // groups >= MIN_CHANNELS
            and out_channels // groups >= MIN_CHANNELS):
        return False
    out_h, out_w = height + 2 * padding[0] - kh + 1, width + 2 * padding[1] - kw + 1
    if any_size:
        return True
    if min_tiles is None:
        return batch * out_h * out_w >= MIN_PIXELS
    m = choose_tile(kh, out_h, out_w)
    return batch * (-(-out_h // m)) * (-(-out_w // m)) >= min_tiles


def choose_tile(kernel_size, out_h, out_w):
    """The output tile m for an r x r kernel and an OH x OW output.

    Counts the multiplications per channel pair and image, alpha^2 * tiles_h * tiles_w
    (tiles sticking out of the output are computed and thrown away), and takes the
    smallest alpha within 10 % of the fewest: smaller tiles are more accurate and
    their transforms cheaper.  AlexNet gets F(3, 5) for conv2 (27 = 9 x 3, no waste)
    and F(3, 3) for conv3-5 (13 x 13).
    """
    costs = {}
    for m in _TILE_CANDIDATES:
        alpha = m + kernel_size - 1
        if alpha <= 7:
            costs[m] = alpha * alpha * (-(-out_h // m)) * (-(-out_w // m))
    fewest = min(costs.values())
    return min(m for m, cost in costs.items() if cost <= 1.1 * fewest)


# ------------------------------------------------------------------ filters kept for inference
#: at most this many bytes of transformed filters (and the weight copies that check them) are kept
FILTER_CACHE_BYTES = 256 << 20

_kept = {}                      # (id(weight), m, groups) -> (weakref to weight, copy of weight, U)
_kept_bytes = [0]
_kept_lock = threading.RLock()  # re-entrant: a weakref callback may run inside a locked section


def _same_bits(a, b):
    """True when a and b hold the same bits (NaN equal to NaN, -0 different from +0)."""
    unsigned = {2: numpy.uint16, 4: numpy.uint32, 8: numpy.uint64}[a.dtype.itemsize]
    return numpy.array_equal(a.view(unsigned), b.view(unsigned))


def _forget(key):
    with _kept_lock:
        entry = _kept.pop(key, None)
        if entry is not None:
            _kept_bytes[0] -= entry[1].nbytes + entry[2].nbytes


def kept_filters(weight, g, groups, m):
    """U of ``weight`` for F(m, r) as (alpha, alpha, G, C/G, O/G), transformed at the first call and
    then reused while the weight holds the same bits (forward passes that record no graph:
    ``conv2d.inference``).

    The filter transform is a GEMM with only r*r = 9 or 25 terms per output, which BLAS runs far
    below its peak: AlexNet's conv2 took 1.1-1.8 ms of its 4.1 ms at batch 1.  Checking a kept
    copy of the weight bit for bit costs 0.09 ms there, and catches every change however it was
    made (an optimiser's step, ``load_state_dict``, an in-place edit).  Entries go when their
    weight array is freed; past ``FILTER_CACHE_BYTES`` new filters are transformed at each call.
    """
    key = (id(weight), m, groups)
    entry = _kept.get(key)
    if (entry is not None and entry[0]() is weight and entry[1].shape == weight.shape
            and entry[1].dtype == weight.dtype and _same_bits(entry[1], weight)):
        return entry[2]
    # kept as (alpha, alpha, G, C/G, O/G): the GEMMs of a small batch read a transposed U up to 1.7x
    # slower (ResNet's 64-channel layer at batch 1: 2.0 against 1.35 ms), a cost paid at every call
    u = numpy.ascontiguousarray(_transform_filters(weight, g, groups).swapaxes(3, 4))
    size = weight.nbytes + u.nbytes
    with _kept_lock:
        _forget(key)
        if _kept_bytes[0] + size <= FILTER_CACHE_BYTES:
            try:
                reference = weakref.ref(weight, lambda _, key=key: _forget(key))
            except TypeError:           # an array type without weak references: not kept
                return u
            _kept[key] = (reference, weight.copy(), u)
            _kept_bytes[0] += size
    return u


# ------------------------------------------------------------------ forward
def winograd_conv2d_forward(x, weight, bias, padding, groups=1, tile=None, _input_gradient=False,
                            keep_filters=False):
    """y = conv2d(x, weight, stride 1, padding) + bias by F(tile, r).  x (N, C, H, W), NumPy arrays.

    Arguments are assumed validated by ``conv2d.conv2d_forward``.  Returns y (N, O, OH, OW).
    (``_input_gradient``: convolve with the flipped, channel-swapped filters of the
    backward pass instead, without building them.  ``keep_filters``: reuse the transformed
    filters while the weight is unchanged, :func:`kept_filters`.)
    """
    batch, channels, height, width = x.shape
    out_channels, channels_per_group, r, _ = weight.shape
    if _input_gradient:
        out_channels, channels_per_group = channels_per_group * groups, out_channels // groups
    pad_h, pad_w = padding
    out_h, out_w = height + 2 * pad_h - r + 1, width + 2 * pad_w - r + 1
    m = tile or choose_tile(r, out_h, out_w)
    alpha = m + r - 1
    tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
    a_t, g, b_t = transform_matrices(m, r, x.dtype)
    filters_per_group = out_channels // groups
    kept = keep_filters and not _input_gradient
    if kept:
        u = kept_filters(weight, g, groups, m)
    else:
        u = _transform_filters(weight, g, groups, _input_gradient,
                               out=scratch("filters", (alpha * alpha, weight.size // (r * r)), x.dtype))
    bias = numpy.zeros(out_channels, x.dtype) if bias is None else bias
    x = numpy.ascontiguousarray(x)
    xp = get_array_module(x)                 # NumPy (the profiler hands in a timed stand-in)

    y = _recycled.empty(numpy, (batch, out_channels, out_h, out_w), x.dtype)
    chunk = images_per_chunk(batch, alpha * alpha * tiles_h * tiles_w * (channels + out_channels)
                              * x.dtype.itemsize)
    for first in range(0, batch, chunk):
        last = min(first + chunk, batch)
        tiles = (last - first) * tiles_h * tiles_w
        v = scratch("columns", (alpha, alpha, groups, tiles, channels_per_group), x.dtype)
        _transform_tiles_cpu(x[first:last], b_t, m, pad_h, pad_w, tiles_h, tiles_w, v)
        product = scratch("product", (alpha, alpha, groups, tiles, filters_per_group), x.dtype)
        # M = V U for every (a, b, group): (tiles, C/G) @ (C/G, O/G), the sum over input channels
        # (U is transformed as (O/G, C/G) and kept as (C/G, O/G); the input gradient's (O/G, C/G)
        # block is already its U)
        filters = u.reshape(alpha * alpha * groups, *u.shape[3:])
        matmul_stack(xp, v.reshape(alpha * alpha * groups, tiles, channels_per_group),
                     filters if _input_gradient or kept else filters.transpose(0, 2, 1),
                     product.reshape(alpha * alpha * groups, tiles, filters_per_group))
        _output_tiles_cpu(product, a_t, bias, y[first:last])
    return y


# ------------------------------------------------------------------ backward
def winograd_conv2d_backward(grad_output, x, weight, padding, groups=1, tile=None,
                             need_input_grad=True, need_weight_grad=True):
    """(grad_input or None, grad_weight or None) of ``winograd_conv2d_forward`` (see Backward pass)."""
    out_channels, channels_per_group, r, _ = weight.shape
    pad_h, pad_w = padding
    grad_output = numpy.ascontiguousarray(grad_output)
    grad_input = grad_weight = None
    if need_input_grad:
        grad_input = winograd_conv2d_forward(grad_output, weight, None, (r - 1 - pad_h, r - 1 - pad_w),
                                             groups, tile, _input_gradient=True)
    if need_weight_grad:
        batch, channels, _, _ = x.shape
        out_h, out_w = grad_output.shape[2:]
        m = tile or choose_tile(r, out_h, out_w)
        alpha = m + r - 1
        tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
        a_t, g, b_t = transform_matrices(m, r, x.dtype)
        a = numpy.ascontiguousarray(a_t.T)
        filters_per_group = out_channels // groups
        # scratch: the input gradient above is done with its filters in this slot
        grad_u = scratch("filters", (alpha, alpha, groups, filters_per_group, channels_per_group), x.dtype)
        partial = numpy.empty((filters_per_group, channels_per_group), x.dtype)
        chunk = images_per_chunk(batch, alpha * alpha * tiles_h * tiles_w * (channels + out_channels)
                                  * x.dtype.itemsize)
        x = numpy.ascontiguousarray(x)
        xp = get_array_module(x)
        for first in range(0, batch, chunk):
            last = min(first + chunk, batch)
            tiles = (last - first) * tiles_h * tiles_w
            v = scratch("columns", (alpha, alpha, groups, tiles, channels_per_group), x.dtype)
            _transform_tiles_cpu(x[first:last], b_t, m, pad_h, pad_w, tiles_h, tiles_w, v)
            grad_m = scratch("product", (alpha, alpha, groups, tiles, filters_per_group), x.dtype)
            _transform_tiles_cpu(grad_output[first:last], a, m, 0, 0, tiles_h, tiles_w, grad_m)
            for i in range(alpha):
                for j in range(alpha):
                    for group in range(groups):
                        # dU = dM^T V: (O/G, tiles) @ (tiles, C/G), the sum over all tiles
                        if first == 0:
                            xp.matmul(grad_m[i, j, group].T, v[i, j, group], out=grad_u[i, j, group])
                        else:
                            xp.matmul(grad_m[i, j, group].T, v[i, j, group], out=partial)
                            grad_u[i, j, group] += partial
        grad_weight = _filter_gradient(grad_u, g)
    return grad_input, grad_weight
