"""Operations that move elements without changing them: reshape, transpose, indexing, concat, stack.

Their backward passes move the gradient back to where each element came from:
reshape the gradient to the old shape, apply the inverse permutation, scatter
into a zero array at the indexed positions (adding where an index repeats),
split along the concatenated axis.
"""
import numpy as np

from ..backend import get_array_module, scatter_add
from ..function import Function


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.input_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                             f"({x.size} elements) into shape {self.shape}") from None

    def backward(self, grad):
        return grad.reshape(self.input_shape)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = tuple(axes)

    def forward(self, x):
        if sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {self.axes} is not a permutation of the {x.ndim} axes of shape {tuple(x.shape)}")
        return x.transpose(self.axes)

    def backward(self, grad):
        inverse = np.argsort([a % grad.ndim for a in self.axes])
        return grad.transpose(tuple(int(i) for i in inverse))


def _to_raw_index(index):
    from ..tensor import Tensor
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


class GetItem(Function):
    """y = x[index] for ints, slices, None, Ellipsis and integer/boolean arrays."""

    def __init__(self, index):
        self.index = _to_raw_index(index)

    def forward(self, x):
        self.input_shape, self.input_dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, grad):
        xp = get_array_module(grad)
        grad_input = xp.zeros(self.input_shape, dtype=grad.dtype)
        scatter_add(grad_input, self.index, grad)  # repeated indices add up
        return grad_input


class Concat(Function):
    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *arrays):
        xp = get_array_module(*arrays)
        first = arrays[0].shape
        for a in arrays[1:]:
            if a.ndim != len(first) or any(n != m for i, (n, m) in enumerate(zip(a.shape, first))
                                         if i != self.axis % len(first)):
                raise ValueError(f"concat along axis {self.axis}: shapes {[tuple(b.shape) for b in arrays]} "
                                 f"differ outside that axis")
        self.sizes = [a.shape[self.axis] for a in arrays]
        return xp.concatenate(arrays, axis=self.axis)

    def backward(self, grad):
        xp = get_array_module(grad)
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(grad, cuts, axis=self.axis))


class Stack(Function):
    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *arrays):
        shapes = {tuple(a.shape) for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"stack: all tensors need the same shape, got {[tuple(a.shape) for a in arrays]}")
        return get_array_module(*arrays).stack(arrays, axis=self.axis)

    def backward(self, grad):
        xp = get_array_module(grad)
        count = grad.shape[self.axis]
        return tuple(xp.take(grad, i, axis=self.axis) for i in range(count))
