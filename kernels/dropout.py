"""Dropout: randomly silencing units during training.

The formula
-----------
Every element is kept with probability 1 - p and zeroed with probability p,
independently.  With u ~ U[0, 1) one uniform draw per element,

    keep = (u >= p)                     P(keep) = 1 - p

Inverted dropout (the default, PyTorch's; ``scale_in_training=True``):

    training:  y = x * keep / (1 - p)
    eval:      y = x

Original dropout (Srivastava, Hinton et al. 2014; the AlexNet paper;
``scale_in_training=False``):

    training:  y = x * keep
    eval:      y = x * (1 - p)

Shapes: any; y, the mask and ``uniform`` all have x's shape.

Why the scaling: the expectation argument
-----------------------------------------
The next layer should see activations of the same size in training and at
test time, otherwise its weights, learnt on one, are wrong for the other.
Over the random mask, E[keep] = 1 - p, so

    inverted:  E[y_train] = x * (1 - p) / (1 - p) = x  =  y_eval
    original:  E[y_train] = x * (1 - p)                =  y_eval

Both match the test-time output to the *expected* training-time output; the
paper does it by shrinking the weights (equivalently the outputs) by 1 - p at
test time ("halve the outgoing weights" for p = 1/2), the inverted form by
growing the kept units during training, which leaves inference untouched
(no dropout code at all at test time).  For a linear next layer the match is
exact in expectation; through nonlinearities it is the "weight scaling
inference rule", an approximation to averaging the exponentially many
thinned networks.

Backward pass
-------------
y = x * m with a multiplier m that does not depend on x, so

    dL/dx = dL/dy * m

The forward returns m as ``mask`` and the backward only multiplies by it:

    training, inverted:  m = keep / (1 - p)   (an array of x's dtype)
    training, original:  m = keep             (an array of x's dtype)
    eval, original:      m = 1 - p            (a scalar of x's dtype)
    identity (eval inverted, or p = 0):  m = None, the gradient passes as is

p = 1 drops everything (m = 0, no division by zero); p = 0 keeps everything.

Randomness
----------
The kernel is pure: the caller (the layer) draws ``uniform`` from the
backend's seeded generator on the data's device and passes it in, so a fixed
``uniform`` gives a fixed result (and a reproducible gradient check).

CPU and GPU
-----------
One comparison and one multiply per element, written in array-module calls
(``xp``) that NumPy and CuPy both have.  CuPy runs each as an elementwise GPU
kernel that is already bandwidth-bound, so a hand-written numba.cuda kernel
would gain nothing but code; ``out=`` arguments avoid temporaries.
"""
from tinynet.backend import get_array_module

_OP = "dropout"


def _check_probability(p):
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"{_OP}: p must be a number in [0, 1], got {p!r}") from None
    if not 0.0 <= p <= 1.0:   # also rejects NaN
        raise ValueError(f"{_OP}: the drop probability p must lie in [0, 1], got {p}")
    return p


def dropout_forward(x, p, uniform, training=True, scale_in_training=True):
    """Apply dropout to ``x``; returns ``(y, mask)`` with ``mask`` the multiplier for the backward.

    ``uniform``: U[0, 1) draws of x's shape (may be ``None`` whenever no draw is
    needed: eval mode, p = 0 or p = 1).  Element i is kept when uniform[i] >= p.
    ``mask`` is an array of x's dtype, a scalar of x's dtype (eval of the
    original variant) or ``None`` (identity).  In the identity cases ``y`` is
    ``x`` itself, not a copy.
    """
    p = _check_probability(p)
    xp = get_array_module(x, uniform)
    dtype = x.dtype
    if not training:
        if scale_in_training or p == 0.0:
            return x, None
        factor = dtype.type(1.0 - p)
        return x * factor, factor
    if p == 0.0:
        return x, None
    if p == 1.0:
        mask = xp.zeros(x.shape, dtype=dtype)
        return xp.zeros(x.shape, dtype=dtype), mask
    if uniform is None:
        raise ValueError(f"{_OP}: training with 0 < p < 1 needs the uniform draws, got uniform=None")
    if tuple(uniform.shape) != tuple(x.shape):
        raise ValueError(f"{_OP}: uniform must have the input's shape {tuple(x.shape)}, "
                         f"got shape {tuple(uniform.shape)}")
    mask = xp.greater_equal(uniform, p).astype(dtype)
    if scale_in_training:
        xp.multiply(mask, dtype.type(1.0 / (1.0 - p)), out=mask)
    y = xp.multiply(x, mask)
    return y, mask


def dropout_backward(grad_output, mask):
    """dL/dx = dL/dy * mask, with ``mask`` as returned by :func:`dropout_forward` (``None``: identity)."""
    if mask is None:
        return grad_output
    if getattr(mask, "ndim", 0) and tuple(mask.shape) != tuple(grad_output.shape):
        raise ValueError(f"{_OP} backward: mask must have grad_output's shape {tuple(grad_output.shape)}, "
                         f"got shape {tuple(mask.shape)}")
    return grad_output * mask


# ---------------------------------------------------------------- the kernel contract
def forward(x, *, p=0.5, uniform=None, training=True, scale_in_training=True):
    """The contract form (``tinynet.ops.kernel_function``): ``(y, saved)``, saved being the mask.

    The caller draws ``uniform`` (the kernel knows arrays, not random generators).
    """
    return dropout_forward(x, p, uniform, training=training, scale_in_training=scale_in_training)


def backward(grad_output, saved, needs_input_grad=(True,)):
    return (dropout_backward(grad_output, saved),)
