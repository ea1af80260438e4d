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
One comparison per element, written in array-module calls (``xp``) that NumPy
and CuPy both have; CuPy runs each as an elementwise kernel that is already
bandwidth-bound, so no hand-written kernel is needed.  ``max(x, 0)`` keeps
NaN (like PyTorch).
"""
from tinynet.backend import get_array_module


def relu_forward(x, out=None):
    """max(x, 0) elementwise; ``out`` (for example ``x`` itself) receives the result without a new array."""
    xp = get_array_module(x)
    return xp.maximum(x, x.dtype.type(0), out=out)


def relu_backward(grad_output, y):
    """dL/dx = dL/dy where y > 0, else 0 (also at x = 0, like PyTorch)."""
    if tuple(grad_output.shape) != tuple(y.shape):
        raise ValueError(f"relu backward: grad_output shape {tuple(grad_output.shape)} does not match "
                         f"the output shape {tuple(y.shape)}")
    xp = get_array_module(grad_output, y)
    return xp.where(y > 0, grad_output, grad_output.dtype.type(0))
