"""Reductions: sum, mean and max over axes, with keepdims.

The backward pass of a reduction re-inserts the reduced axes (as size 1) and
broadcasts the incoming gradient back over them: every element that was summed
receives the gradient of the sum unchanged; for a mean it is divided by the
count; for a max it goes only to the element(s) that were the maximum.
"""
from ..backend import get_array_module
from ..function import Function


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    axes = []
    for a in axis:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        axes.append(a % max(ndim, 1))
    return tuple(sorted(axes))


def _restore_reduced_axes(grad, axes, keepdims, input_shape):
    """Give ``grad`` size-1 axes where the forward reduced, so it broadcasts to ``input_shape``."""
    xp = get_array_module(grad)
    if not keepdims:
        shape = [1 if i in axes else n for i, n in enumerate(input_shape)]
        grad = grad.reshape(shape)
    return xp.broadcast_to(grad, input_shape)


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim)
        self.input_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        return _restore_reduced_axes(grad, self.axes, self.keepdims, self.input_shape)


class Mean(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim)
        self.input_shape = x.shape
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        return _restore_reduced_axes(grad / self.count, self.axes, self.keepdims, self.input_shape)


class Max(Function):
    """y = max over axes.  The gradient goes to the maximal elements; tied maxima share it equally
    (the subgradient PyTorch's ``amax`` uses), so the gradient's total is preserved."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim)
        self.x = x
        self.y = x.max(axis=self.axes, keepdims=True)
        return self.y if self.keepdims else self.y.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, grad):
        is_max = (self.x == self.y).astype(self.x.dtype)
        is_max /= is_max.sum(axis=self.axes, keepdims=True)
        return _restore_reduced_axes(grad, self.axes, self.keepdims, self.x.shape) * is_max
