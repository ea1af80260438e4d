r"""Batch normalisation (Ioffe & Szegedy, 2015): forward and backward, CPU (numba) and GPU (CuPy).

The formula
-----------
The input is viewed as x of shape (N, C, S): N samples, C channels (features),
S positions per channel (S = H*W for images, ``BatchNorm2d``; S = L or 1 for
``BatchNorm1d``).  Every channel c is normalised over its M = N*S values:

    mean[c]   = 1/M * sum_{n,s} x[n, c, s]
    var[c]    = 1/M * sum_{n,s} (x[n, c, s] - mean[c])^2          (biased: divides by M)
    invstd[c] = 1 / sqrt(var[c] + eps)
    xhat      = (x - mean[c]) * invstd[c]                          zero mean, unit variance
    y         = weight[c] * xhat + bias[c]                         (weight = gamma, bias = beta)

``weight`` and ``bias`` (the affine part) let the layer undo the normalisation
where that helps; without them (``affine=False``) y = xhat.

Training and evaluation
-----------------------
In training the statistics are the batch's own, and the running estimates that
evaluation uses are updated in place, with PyTorch's momentum convention:

    running_mean <- (1 - momentum) * running_mean + momentum * mean
    running_var  <- (1 - momentum) * running_var  + momentum * var * M/(M - 1)

The running variance takes the *unbiased* batch variance (divided by M - 1):
it estimates the population's variance, while the normalisation itself uses
the batch's biased variance.  ``momentum`` is the weight of the new batch (0.1
by default; it is 1 - the momentum of an exponential average as other papers
write it).  In evaluation y = weight * (x - running_mean) / sqrt(running_var +
eps) + bias: a fixed affine map per channel, the same for every batch size.

Training needs at least two values per channel (M > 1): with one, x - mean is
0 and the variance 0, and the output says nothing; like PyTorch we raise.

Backward pass
-------------
Write dy = dL/dy, and the two per-channel sums

    sum_dy[c]      = sum_{n,s} dy[n, c, s]
    sum_dy_xmu[c]  = sum_{n,s} dy[n, c, s] * (x[n, c, s] - mean[c])

* bias and weight: y is linear in them, so
      dbias[c]   = sum_dy[c]
      dweight[c] = sum_{n,s} dy * xhat = sum_dy_xmu[c] * invstd[c]
* input, evaluation mode: mean and invstd are constants, so
      dx = dy * weight[c] * invstd[c]
* input, training mode: mean and var depend on every x of the channel.  With
  g = dL/dxhat = dy * weight[c], the chain rule through xhat = (x - mean)*invstd,
  dmean/dx = 1/M and dvar/dx = 2(x - mean)/M gives

      dL/dvar  = sum g * (x - mean) * (-1/2) * invstd^3
      dL/dmean = sum g * (-invstd)          (the dvar/dmean term is 0: sum (x - mean) = 0)
      dx       = g * invstd + dL/dvar * 2(x - mean)/M + dL/dmean / M
               = invstd/M * (M*g - sum g - xhat * sum g*xhat)

  and, with sum g = weight*sum_dy and sum g*xhat = weight*invstd*sum_dy_xmu,

      dx = weight[c]*invstd[c] * (dy - sum_dy[c]/M - (x - mean[c]) * invstd[c]^2 * sum_dy_xmu[c]/M)

  The two subtracted terms remove from dy its channel mean and its component
  along xhat: the directions in which normalising leaves y unchanged.

Both modes are therefore one elementwise pass after two per-channel sums,

      dx = dy * k_dy[c] + x * k_x[c] + k_const[c]

with k_dy = weight*invstd, k_x = -weight*invstd^3*sum_dy_xmu/M (0 in evaluation)
and k_const = -weight*invstd*sum_dy/M - mean*k_x (0 in evaluation).

CPU and GPU
-----------
CPU: numba loops, parallel over channels for the sums (accumulated in float64, in
vector-wide partial sums, two passes for the variance, so float32 inputs lose
nothing to cancellation)
and over (sample, channel) planes for the elementwise passes.  Evaluation
without a graph (``inference``) is a single pass that also computes each
plane's scale and shift, in float64 as ``forward`` does: at batch 1 the dozen
small array calls of those per-channel coefficients cost more than the pass
itself (one pass instead made ResNet-18's batch-1 forward pass 1.9 % faster).  GPU: CuPy
reductions and elementwise expressions (no hand-written CUDA kernel: both
steps are what CuPy's generated kernels already do at memory speed); the sums
are also accumulated in float64.
"""
import numpy

from ._checks import check_floating
from . import _recycled
from ._numba import grain_for, njit, parallel_tasks
from ._paths import array_module, device_paths

_OP = "batch_norm"


# ----------------------------------------------------------------- the two passes, CPU
# The sums may be reassociated (``fastmath={"reassoc"}``): a strict left-to-right float64 sum is one
# chain of dependent additions, a few cycles each, which the CPU cannot overlap; reassociated, the
# compiler keeps several partial sums in vector registers and the pass runs at memory speed.  The
# sums stay float64, in another order.
SUMS = dict(cache=True, nogil=True, fastmath={"reassoc"})


@njit(**SUMS)
def _channel_statistics_tasks(x, mean, variance, first, last):
    """mean[c] and the biased variance[c] of x (N, C, S), in two passes per channel."""
    count = x.shape[0] * x.shape[2]
    for c in range(first, last):
        total = 0.0
        for n in range(x.shape[0]):
            for s in range(x.shape[2]):
                total += x[n, c, s]
        channel_mean = total / count
        squares = 0.0
        for n in range(x.shape[0]):
            for s in range(x.shape[2]):
                deviation = x[n, c, s] - channel_mean
                squares += deviation * deviation
        mean[c] = channel_mean
        variance[c] = squares / count


def _channel_statistics_cpu(x, mean, variance):
    parallel_tasks(_channel_statistics_tasks, x.shape[1], x, mean, variance,
                   grain=grain_for(2 * x.shape[0] * x.shape[2]))          # two passes over a channel


@njit(cache=True, nogil=True)
def _scale_and_shift_tasks(x, scale, shift, y, first, last):
    """y[n, c, s] = x[n, c, s] * scale[c] + shift[c], one task per (n, c) plane; scale, shift in x's dtype."""
    channels = x.shape[1]
    for plane in range(first, last):
        n, c = plane // channels, plane % channels
        a, b = scale[c], shift[c]
        for s in range(x.shape[2]):
            y[n, c, s] = x[n, c, s] * a + b


def _scale_and_shift_cpu(x, scale, shift, y):
    parallel_tasks(_scale_and_shift_tasks, x.shape[0] * x.shape[1], x, scale, shift, y,
                   grain=grain_for(x.shape[2]))


@njit(cache=True, nogil=True)
def _normalize_tasks(x, weight, bias, mean, variance, eps, y, first, last):
    """Evaluation: y[n, c, s] = x[n, c, s] * scale + shift, one task per (n, c) plane, with
    scale = weight[c] / sqrt(variance[c] + eps) and shift = bias[c] - mean[c] * scale worked out
    in float64 and rounded to x's dtype (``_coefficients``' arithmetic, so ``forward``'s bits);
    ``weight`` or ``bias`` None: that part of the affine map is absent."""
    channels = x.shape[1]
    for plane in range(first, last):
        n, c = plane // channels, plane % channels
        scale = 1.0 / numpy.sqrt(numpy.float64(variance[c]) + eps)
        if weight is not None:
            scale = numpy.float64(weight[c]) * scale
        if bias is not None:
            shift = numpy.float64(bias[c]) - numpy.float64(mean[c]) * scale
        else:
            shift = -numpy.float64(mean[c]) * scale
        a, b = y.dtype.type(scale), y.dtype.type(shift)
        for s in range(x.shape[2]):
            y[n, c, s] = x[n, c, s] * a + b


def _normalize_cpu(x, weight, bias, mean, variance, eps, y):
    parallel_tasks(_normalize_tasks, x.shape[0] * x.shape[1], x, weight, bias, mean, variance, float(eps), y,
                   grain=grain_for(x.shape[2]))


@njit(**SUMS)
def _gradient_sums_tasks(grad_y, x, mean, sum_dy, sum_dy_xmu, first, last):
    """sum_dy[c] = sum dy and sum_dy_xmu[c] = sum dy * (x - mean[c]), in float64."""
    for c in range(first, last):
        total, weighted = 0.0, 0.0
        channel_mean = mean[c]
        for n in range(x.shape[0]):
            for s in range(x.shape[2]):
                g = grad_y[n, c, s]
                total += g
                weighted += g * (x[n, c, s] - channel_mean)
        sum_dy[c] = total
        sum_dy_xmu[c] = weighted


def _gradient_sums_cpu(grad_y, x, mean, sum_dy, sum_dy_xmu):
    parallel_tasks(_gradient_sums_tasks, x.shape[1], grad_y, x, mean, sum_dy, sum_dy_xmu,
                   grain=grain_for(x.shape[0] * x.shape[2]))


@njit(cache=True, nogil=True)
def _input_gradient_tasks(grad_y, x, k_dy, k_x, k_const, grad_x, first, last):
    """dx = dy * k_dy[c] + x * k_x[c] + k_const[c] (see the module docstring); k_* in x's dtype."""
    channels = x.shape[1]
    for plane in range(first, last):
        n, c = plane // channels, plane % channels
        a, b, d = k_dy[c], k_x[c], k_const[c]
        for s in range(x.shape[2]):
            grad_x[n, c, s] = grad_y[n, c, s] * a + x[n, c, s] * b + d


def _input_gradient_cpu(grad_y, x, k_dy, k_x, k_const, grad_x):
    parallel_tasks(_input_gradient_tasks, x.shape[0] * x.shape[1], grad_y, x, k_dy, k_x, k_const, grad_x,
                   grain=grain_for(x.shape[2]))


# ----------------------------------------------------------------- the same passes, GPU
def _channel_statistics_gpu(x, mean, variance):
    mean[...] = x.mean(axis=(0, 2), dtype=numpy.float64)
    deviation = x - mean.astype(x.dtype)[None, :, None]
    variance[...] = (deviation * deviation).mean(axis=(0, 2), dtype=numpy.float64)


def _scale_and_shift_gpu(x, scale, shift, y):
    y[...] = x * scale[None, :, None] + shift[None, :, None]


def _gradient_sums_gpu(grad_y, x, mean, sum_dy, sum_dy_xmu):
    sum_dy[...] = grad_y.sum(axis=(0, 2), dtype=numpy.float64)
    deviation = x - mean.astype(x.dtype)[None, :, None]
    sum_dy_xmu[...] = (grad_y * deviation).sum(axis=(0, 2), dtype=numpy.float64)


def _input_gradient_gpu(grad_y, x, k_dy, k_x, k_const, grad_x):
    grad_x[...] = grad_y * k_dy[None, :, None] + x * k_x[None, :, None] + k_const[None, :, None]


def _normalize_gpu(x, weight, bias, mean, variance, eps, y):
    xp = array_module(x)
    mean = mean.astype(numpy.float64)
    scale, shift = _coefficients(weight, bias, mean, 1.0 / xp.sqrt(variance.astype(numpy.float64) + eps))
    _scale_and_shift_gpu(x, scale.astype(x.dtype), shift.astype(x.dtype), y)


_channel_statistics = device_paths(_channel_statistics_cpu, _channel_statistics_gpu)
_scale_and_shift = device_paths(_scale_and_shift_cpu, _scale_and_shift_gpu)
_gradient_sums = device_paths(_gradient_sums_cpu, _gradient_sums_gpu)
_input_gradient = device_paths(_input_gradient_cpu, _input_gradient_gpu)
_normalize = device_paths(_normalize_cpu, _normalize_gpu)


# ----------------------------------------------------------------- checks
def _as_three_axes(x):
    """(N, C), (N, C, L) or (N, C, H, W) -> the (N, C, S) view every pass works on."""
    if x.ndim < 2:
        raise ValueError(f"{_OP}: expected an input of shape (N, C), (N, C, L) or (N, C, H, W), "
                         f"got shape {tuple(x.shape)}")
    spatial = 1
    for extent in x.shape[2:]:
        spatial *= int(extent)
    return x.reshape(x.shape[0], x.shape[1], spatial)


def _check_channel_vector(name, array, channels, dtype):
    if array is None:
        return
    if tuple(array.shape) != (channels,):
        raise ValueError(f"{_OP}: expected {name} of shape ({channels},) (one per channel), "
                         f"got shape {tuple(array.shape)}")
    if name in ("weight", "bias") and array.dtype != dtype:
        raise ValueError(f"{_OP}: {name} dtype {array.dtype} differs from input dtype {dtype}")


def _coefficients(weight, bias, mean, invstd):
    """y = x * scale + shift per channel, from float64 mean and invstd: scale = weight * invstd and
    shift = bias - mean * scale (weight 1 and bias 0 where absent); float64."""
    scale = invstd if weight is None else weight.astype(numpy.float64) * invstd
    shift = -mean * scale if bias is None else bias.astype(numpy.float64) - mean * scale
    return scale, shift


def _checked(x, weight, bias, running_mean, running_var, training, eps):
    """The (N, C, S) contiguous view of x and its array module, after checking every argument."""
    check_floating(_OP, x)
    x3 = _as_three_axes(x)
    xp = array_module(x, weight, bias, running_mean, running_var)
    x3 = xp.ascontiguousarray(x3)
    channels = x3.shape[1]
    for name, array in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                        ("running_var", running_var)):
        _check_channel_vector(name, array, channels, x.dtype)
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{_OP}: evaluation mode (training=False) needs running_mean and running_var")
    if eps <= 0:
        raise ValueError(f"{_OP}: eps must be positive, got {eps}")
    return x3, xp


# ----------------------------------------------------------------- the contract
def forward(x, weight=None, bias=None, *, running_mean=None, running_var=None, training=True,
            momentum=0.1, eps=1e-5):
    """y = weight * (x - mean) / sqrt(var + eps) + bias, per channel (axis 1).

    x: (N, C, ...) float; weight, bias: (C,) or None (no affine part);
    running_mean, running_var: (C,) arrays or None.  In training the batch's
    statistics normalise x and, when given, the running statistics are updated
    *in place* with ``momentum`` (see the module docstring); in evaluation
    (``training=False``) the running statistics normalise x.  Returns
    ``(y, saved)``.
    """
    x3, xp = _checked(x, weight, bias, running_mean, running_var, training, eps)
    channels = x3.shape[1]
    count = x3.shape[0] * x3.shape[2]
    if training:
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{tuple(x.shape)}")
        mean = xp.empty(channels, dtype=numpy.float64)
        variance = xp.empty(channels, dtype=numpy.float64)
        _channel_statistics(x3, mean, variance)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * variance * (count / (count - 1))).astype(running_var.dtype)
    else:
        mean = running_mean.astype(numpy.float64)
        variance = running_var.astype(numpy.float64)
    invstd = 1.0 / xp.sqrt(variance + eps)
    scale, shift = _coefficients(weight, bias, mean, invstd)
    y = _recycled.empty(xp, x3.shape, x3.dtype)
    # the per-channel coefficients in x's dtype, so the elementwise pass runs at x's precision and speed
    _scale_and_shift(x3, scale.astype(x3.dtype), shift.astype(x3.dtype), y)
    saved = dict(x=x3, input_shape=tuple(x.shape), weight=weight, has_bias=bias is not None,
                 mean=mean, invstd=invstd, training=bool(training))
    return y.reshape(x.shape), saved


def inference(x, weight=None, bias=None, *, running_mean=None, running_var=None, training=True,
              momentum=0.1, eps=1e-5):
    """``forward``'s y (the same bits) when no graph is recorded.  In training the running statistics
    are updated as in ``forward``; in evaluation one pass computes the coefficients as it goes."""
    if training:
        return forward(x, weight, bias, running_mean=running_mean, running_var=running_var,
                       training=True, momentum=momentum, eps=eps)[0]
    x3, xp = _checked(x, weight, bias, running_mean, running_var, training, eps)
    y = _recycled.empty(xp, x3.shape, x3.dtype)
    _normalize(x3, weight, bias, running_mean, running_var, eps, y)
    return y.reshape(x.shape)


def backward(grad_output, saved, needs_input_grad=(True, True, True)):
    """Gradients (grad_x, grad_weight, grad_bias), None where not needed or absent."""
    x3, weight = saved["x"], saved["weight"]
    if tuple(grad_output.shape) != saved["input_shape"]:
        raise ValueError(f"{_OP}: expected grad_output of shape {saved['input_shape']}, "
                         f"got shape {tuple(grad_output.shape)}")
    needs = tuple(needs_input_grad) + (False,) * (3 - len(needs_input_grad))
    xp = array_module(grad_output, x3)
    grad_y = xp.ascontiguousarray(grad_output.reshape(x3.shape))
    channels = x3.shape[1]
    count = x3.shape[0] * x3.shape[2]
    mean, invstd = saved["mean"], saved["invstd"]

    sum_dy = xp.empty(channels, dtype=numpy.float64)
    sum_dy_xmu = xp.empty(channels, dtype=numpy.float64)
    _gradient_sums(grad_y, x3, mean, sum_dy, sum_dy_xmu)

    grad_x = grad_weight = grad_bias = None
    if needs[0]:
        gamma = 1.0 if weight is None else weight.astype(numpy.float64)
        k_dy = gamma * invstd * xp.ones(channels, dtype=numpy.float64)
        if saved["training"]:
            k_x = -gamma * invstd ** 3 * sum_dy_xmu / count
            k_const = -gamma * invstd * sum_dy / count - mean * k_x
        else:
            k_x = xp.zeros(channels, dtype=numpy.float64)
            k_const = xp.zeros(channels, dtype=numpy.float64)
        grad_x = _recycled.empty(xp, x3.shape, x3.dtype)
        _input_gradient(grad_y, x3, k_dy.astype(x3.dtype), k_x.astype(x3.dtype), k_const.astype(x3.dtype),
                        grad_x)
        grad_x = grad_x.reshape(saved["input_shape"])
    if needs[1] and weight is not None:
        grad_weight = (sum_dy_xmu * invstd).astype(x3.dtype)
    if needs[2] and saved["has_bias"]:
        grad_bias = sum_dy.astype(x3.dtype)
    return grad_x, grad_weight, grad_bias
