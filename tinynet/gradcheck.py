"""Numerical gradients by central differences, in float64.

    df/dx_i  ~=  (f(x + eps*e_i) - f(x - eps*e_i)) / (2*eps)

The error of this estimate is O(eps^2) from the Taylor expansion plus
O(machine_eps / eps) from rounding, which is why it is only trustworthy in
float64 (eps = 1e-6 gives errors near 1e-10 for smooth functions) and why the
inputs must stay away from kinks (ReLU at 0, ties in a max).

``numerical_gradient`` works on raw arrays and is used to check the kernels;
``gradcheck`` (below) checks autograd Functions and whole models.
"""
import numpy as np


def numerical_gradient(function, array, output_grad=None, eps=1e-6):
    """Gradient of ``sum(function() * output_grad)`` with respect to ``array`` (perturbed in place).

    ``function`` takes no arguments and reads ``array``; every element of
    ``array`` is nudged by +eps and -eps in turn and restored afterwards.
    ``output_grad`` defaults to ones (the gradient of ``sum(function())``).
    """
    flat = array.reshape(-1)
    if not np.shares_memory(flat, array):
        raise ValueError("numerical_gradient needs a contiguous array it can perturb in place")
    gradient = np.zeros(array.shape, dtype=np.float64)
    flat_gradient = gradient.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = np.array(function(), dtype=np.float64, copy=True)  # the output may be a view of array
        flat[i] = original - eps
        minus = np.array(function(), dtype=np.float64, copy=True)
        flat[i] = original
        difference = plus - minus
        if output_grad is not None:
            difference = difference * output_grad
        flat_gradient[i] = difference.sum() / (2 * eps)
    return gradient


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` with the input, the element and both gradients that disagree."""


def gradcheck(function, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """Compare autograd's gradients of ``function(*inputs)`` with central differences.

    ``inputs`` is a sequence of Tensors (float64 ones with ``requires_grad=True``
    are checked; others are passed through unchanged).  The output may have any
    shape: it is reduced to the scalar ``sum(output * w)`` with a fixed random
    ``w``, which checks every output element without one backward per element.

    Returns True, or raises ``GradcheckError`` naming the first input and
    element whose analytic and numerical derivatives differ by more than
    ``atol + rtol * |numerical|`` (returns False instead when
    ``raise_exception=False``).
    """
    from . import backend
    from .tensor import Tensor

    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ValueError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; central differences need "
                             f"float64 (eps={eps} is lost in float32 rounding) -- use tensor.double()")

    output = function(*inputs)
    weights = np.random.default_rng(seed).standard_normal(output.shape)
    weights_on_device = backend.to_device(weights, output.device)
    for i in checked:
        inputs[i].grad = None
    output.backward(weights_on_device)
    analytic = [backend.to_numpy(inputs[i].grad.data) if inputs[i].grad is not None
                else np.zeros(inputs[i].shape) for i in checked]

    from .function import no_grad
    for position, i in enumerate(checked):
        data = inputs[i].data
        host = backend.to_numpy(data).copy()

        def evaluate():
            inputs[i].data = backend.to_device(host, backend.device_of(data))
            with no_grad():
                return backend.to_numpy(function(*inputs).data)

        try:
            numerical = numerical_gradient(evaluate, host, weights, eps)
        finally:
            inputs[i].data = data
        difference = np.abs(analytic[position] - numerical)
        allowed = atol + rtol * np.abs(numerical)
        if np.any(difference > allowed):
            worst = np.unravel_index(np.argmax(difference - allowed), difference.shape)
            message = (f"gradcheck failed for input {i} (shape {inputs[i].shape}) at element "
                       f"{tuple(int(k) for k in worst)}: analytic {analytic[position][worst]:.10g}, "
                       f"numerical {numerical[worst]:.10g}, |difference| {difference[worst]:.3g} > "
                       f"allowed {allowed[worst]:.3g}; {int((difference > allowed).sum())} of "
                       f"{difference.size} elements disagree")
            if raise_exception:
                raise GradcheckError(message)
            return False
    return True
