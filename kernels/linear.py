"""Fully connected (linear) layer: one matrix product plus a bias.

The formula
-----------
With x of shape (N, in), a weight W of shape (out, in) (PyTorch's layout: one
row per output unit) and a bias b of shape (out,):

    y = x W^T + b                    y[n, i] = sum_k x[n, k] W[i, k] + b[i]

y has shape (N, out).  Any leading shape works, x of shape (..., in) gives y
of shape (..., out): every leading index is one more "sample" (a 1-D x of
shape (in,) is a single sample).

Backward pass
-------------
y[n, i] is linear in each of x, W and b, so every partial derivative is the
coefficient it multiplies:

    dy[n, i] / dx[n, k] = W[i, k]   ->  dx[n, k] = sum_i dy[n, i] W[i, k]     dx = dy W
    dy[n, i] / dW[i, k] = x[n, k]   ->  dW[i, k] = sum_n dy[n, i] x[n, k]     dW = dy^T x
    dy[n, i] / db[i]    = 1         ->  db[i]    = sum_n dy[n, i]             db = dy summed over n

The sums over n for dW and db accumulate over every sample of the batch (and
over all leading axes for a (..., in) input): the weights are shared by all
samples, so their gradient is the sum of the per-sample gradients.  The
shapes check themselves: dx is (N, out)(out, in) = (N, in), dW is
(out, N)(N, in) = (out, in), like the things they are gradients of.

CPU and GPU
-----------
All three products are GEMMs: ``xp.matmul`` hands them to BLAS (NumPy) or
cuBLAS (CuPy); nothing here is worth a hand-written kernel.  The forward
product is computed transposed, y = (W x^T)^T, then copied to a contiguous
(N, out) array (cheap: y is small): the same numbers, but OpenBLAS runs
``x @ W.T`` (a transposed *second* operand) erratically slowly on 2 threads --
measured up to 10x slower (benchmarks/README.md, "Measurements behind the design") -- while ``W @ x.T`` is fast and steady.  (The same trick for dW would
need a transposing copy of the whole weight-sized result, which costs more
than it saves.)  cuBLAS is indifferent, so both backends share the code.
"""
import numpy

from tinynet.backend import get_array_module

from . import _recycled

_OP = "linear"


def _check_shapes(x, weight, bias=None):
    if weight.ndim != 2:
        raise ValueError(f"{_OP}: expected a 2-D weight of shape (out_features, in_features), "
                         f"got weight shape {tuple(weight.shape)}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{_OP}: input shape {tuple(x.shape)} does not match weight shape {tuple(weight.shape)}: "
            f"the input's last axis must have in_features = {weight.shape[1]} entries")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{_OP}: expected a bias of shape ({weight.shape[0]},) for weight shape "
                         f"{tuple(weight.shape)}, got bias shape {tuple(bias.shape)}")


def linear_forward(x, weight, bias=None):
    """y = x W^T + b for x of shape (..., in), W of shape (out, in), b of shape (out,) or None."""
    _check_shapes(x, weight, bias)
    xp = get_array_module(x, weight, bias)
    rows = x.reshape(-1, weight.shape[1])
    y = xp.ascontiguousarray(xp.matmul(weight, rows.T).T)   # = rows W^T, see "CPU and GPU"
    if bias is not None:
        y += bias
    return y.reshape(tuple(x.shape[:-1]) + (weight.shape[0],))


def linear_backward(grad_output, x, weight, need_input_grad=True, need_weight_grad=True, has_bias=True):
    """Gradients ``(grad_input, grad_weight, grad_bias)`` of y = x W^T + b; ``None`` for those not needed.

    grad_input = dy W, grad_weight = dy^T x, grad_bias = dy summed over all leading axes.
    """
    _check_shapes(x, weight)
    expected = tuple(x.shape[:-1]) + (weight.shape[0],)
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"{_OP} backward: grad_output must have shape {expected} (input shape "
                         f"{tuple(x.shape)}, weight shape {tuple(weight.shape)}), "
                         f"got shape {tuple(grad_output.shape)}")
    xp = get_array_module(grad_output, x, weight)
    grad_input = None
    if need_input_grad:
        grad_input = xp.matmul(grad_output, weight, out=_recycled.empty(
            xp, tuple(grad_output.shape[:-1]) + (weight.shape[1],),
            numpy.result_type(grad_output.dtype, weight.dtype)))
    grad_weight = grad_bias = None
    if need_weight_grad or has_bias:
        # all leading axes are samples: flatten them into one batch axis
        grad_rows = grad_output.reshape(-1, weight.shape[0])
        if need_weight_grad:
            # fc6's is 151 MB: recycled memory spares a fresh allocation's page faults every step
            grad_weight = xp.matmul(grad_rows.T, x.reshape(-1, weight.shape[1]),
                                    out=_recycled.empty(xp, weight.shape,
                                                        numpy.result_type(grad_rows.dtype, x.dtype)))
        if has_bias:
            grad_bias = grad_rows.sum(axis=0)
    return grad_input, grad_weight, grad_bias


# ---------------------------------------------------------------- the kernel contract
def forward(x, weight, bias=None):
    """The contract form (``tinynet.ops.kernel_function``): ``(y, saved)``."""
    return linear_forward(x, weight, bias), (x, weight, bias is not None)


def backward(grad_output, saved, needs_input_grad=(True, True, True)):
    x, weight, has_bias = saved
    needs = tuple(needs_input_grad) + (True,) * (3 - len(needs_input_grad))
    return linear_backward(grad_output, x, weight, need_input_grad=needs[0], need_weight_grad=needs[1],
                           has_bias=has_bias and bool(needs[2]))
