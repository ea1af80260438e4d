"""Rectified linear unit: y = max(x, 0), elementwise.

The formula
-----------
    y = max(x, 0)                          (any shape; y has x's shape and dtype)

Backward pass
-------------
    dy/dx = 1 where x > 0, 0 where x < 0

At x = 0 the function has a kink and no derivative; like PyTorch we use 0
there (any value in [0, 1] is a valid subgradient).  Since y > 0 exactly where
x > 0, the backward needs only the *output*:

    dL/dx = dL/dy * [y > 0]

which is what lets a layer compute ReLU in place (``relu_forward(x, out=x)``)
and throw x away: the backward never looks at it.  The gradient is selected,
not multiplied, so a NaN or inf in dL/dy where the unit was off still gives
exactly 0 (as PyTorch does).

CPU and GPU
-----------
The forward pass on the GPU is one array-module call, ``xp.maximum(x, 0)``,
which keeps NaN (like PyTorch) and turns -0 into +0.  On the CPU a numba loop
computes the same, ``0 if x <= 0 else x`` (NaN <= 0 is false, so NaN stays),
at the speed of a copy: NumPy 2.4's ``maximum`` took 4x as long (75 against
18 us on 200 K float32 elements, one thread).  The backward pass as array
calls (``where(y > 0, dy, 0)``) makes two passes and a boolean temporary; on
the CPU a numba loop does it in one parallel pass instead (what ``where`` cost
AlexNet's training step: benchmarks/README.md, "Measurements behind the
design").  CuPy fuses ``where`` well enough.
"""
import numpy

from tinynet.backend import get_array_module

from . import _recycled
from ._numba import ELEMENTWISE_GRAIN, njit, parallel_tasks
from ._paths import device_paths


@njit(cache=True, nogil=True)
def _relu_backward_tasks(grad_output, y, grad_input, first, last):
    # flat, contiguous arrays of one length; `y > 0` is False for NaN, as in `where`.
    # The loop counts from 0 over slices (_numba.py, "Loops that vectorise").
    zero = grad_input.dtype.type(0)
    grad_output, y, grad_input = grad_output[first:last], y[first:last], grad_input[first:last]
    for i in range(grad_input.size):
        grad_input[i] = grad_output[i] if y[i] > 0 else zero


@njit(cache=True, nogil=True)
def _relu_forward_tasks(x, y, first, last):
    # flat, contiguous arrays of one length (y may be x); counts from 0 (_numba.py)
    zero = y.dtype.type(0)
    x, y = x[first:last], y[first:last]
    for i in range(y.size):
        value = x[i]
        y[i] = zero if value <= 0 else value


def _relu_backward_cpu(grad_output, y, grad_input):
    parallel_tasks(_relu_backward_tasks, grad_input.size, grad_output, y, grad_input,
                   grain=ELEMENTWISE_GRAIN)


#: below this many elements one NumPy call costs less than a numba call from Python
NUMPY_BELOW = 4096


def _select_gradient_cpu(grad_output, y):
    if grad_output.size < NUMPY_BELOW:
        return numpy.where(y > 0, grad_output, grad_output.dtype.type(0))
    grad_output = numpy.ascontiguousarray(grad_output)
    grad_input = _recycled.empty(numpy, grad_output.shape, grad_output.dtype)
    _relu_backward_cpu(grad_output.reshape(-1), numpy.ascontiguousarray(y).reshape(-1), grad_input.reshape(-1))
    return grad_input


def _select_gradient_gpu(grad_output, y):
    xp = get_array_module(grad_output, y)
    return xp.where(y > 0, grad_output, grad_output.dtype.type(0))


_select_gradient = device_paths(_select_gradient_cpu, _select_gradient_gpu)


def _relu_forward_cpu(x, out):
    # the loop writes y[i] from x[i] only: an ``out`` that is x itself is fine, a shifted overlap is not
    if (x.size < NUMPY_BELOW or x.dtype not in (numpy.float32, numpy.float64) or not x.flags.c_contiguous
            or (out is not None and (out.dtype != x.dtype or out.shape != x.shape or not out.flags.c_contiguous
                                     or (out is not x and numpy.may_share_memory(out, x))))):
        return numpy.maximum(x, x.dtype.type(0), out=out)
    y = _recycled.empty(numpy, x.shape, x.dtype) if out is None else out
    parallel_tasks(_relu_forward_tasks, x.size, x.reshape(-1), y.reshape(-1), grain=ELEMENTWISE_GRAIN)
    return y


def _relu_forward_gpu(x, out):
    xp = get_array_module(x)
    return xp.maximum(x, x.dtype.type(0), out=out)


_relu_forward = device_paths(_relu_forward_cpu, _relu_forward_gpu)


def relu_forward(x, out=None):
    """max(x, 0) elementwise; ``out`` (for example ``x`` itself) receives the result without a new array."""
    return _relu_forward(x, out)


def relu_backward(grad_output, y):
    """dL/dx = dL/dy where y > 0, else 0 (also at x = 0, like PyTorch)."""
    if tuple(grad_output.shape) != tuple(y.shape):
        raise ValueError(f"relu backward: grad_output shape {tuple(grad_output.shape)} does not match "
                         f"the output shape {tuple(y.shape)}")
    return _select_gradient(grad_output, y)


# ---------------------------------------------------------------- the kernel contract
def forward(x):
    """The contract form (``tinynet.ops.kernel_function``): ``(y, saved)``; the backward needs only y."""
    y = relu_forward(x)
    return y, y


def backward(grad_output, saved, needs_input_grad=(True,)):
    return (relu_backward(grad_output, saved),)
