"""Elementwise arithmetic with broadcasting, and matrix multiplication.

Broadcasting in the forward pass copies an operand along new or size-1 axes;
the backward pass must undo that by *summing* the gradient over those axes
(``unbroadcast``), because each copy contributed to the loss separately:
if y_ij = a_i + b_ij then dL/da_i = sum_j dL/dy_ij.
"""
import numpy

from ..backend import get_array_module
from ..function import Function


def add_arrays(a, b):
    """a + b.  Two CPU arrays of one shape and dtype -- ResNet's residual sums, the gradient sums
    of backward -- go into recycled memory (``kernels/_recycled.py``), not fresh pages."""
    if (isinstance(a, numpy.ndarray) and isinstance(b, numpy.ndarray) and a.shape == b.shape
            and a.dtype == b.dtype):
        from ..kernels import _recycled
        return numpy.add(a, b, out=_recycled.empty(numpy, a.shape, a.dtype))
    return a + b


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: over leading axes broadcasting added, and over size-1 axes."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _shape(x):
    return getattr(x, "shape", ())


def _check_broadcast(op, a, b):
    shape_a, shape_b = _shape(a), _shape(b)
    for n, m in zip(reversed(shape_a), reversed(shape_b)):
        if n != m and n != 1 and m != 1:
            raise ValueError(f"{op}: shapes {tuple(shape_a)} and {tuple(shape_b)} cannot be broadcast together")


class Add(Function):
    def forward(self, a, b):
        _check_broadcast("add", a, b)
        self.shapes = _shape(a), _shape(b)
        return add_arrays(a, b)

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        _check_broadcast("sub", a, b)
        self.shapes = _shape(a), _shape(b)
        return a - b

    def backward(self, grad):
        grad_b = -unbroadcast(grad, self.shapes[1]) if self.needs_input_grad[1] else None
        return unbroadcast(grad, self.shapes[0]), grad_b


class Mul(Function):
    """y = a * b;  dy/da = b,  dy/db = a."""

    def forward(self, a, b):
        _check_broadcast("mul", a, b)
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        grad_a = unbroadcast(grad * self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * self.a, _shape(self.b)) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    """y = a / b;  dy/da = 1/b,  dy/db = -a/b^2 = -y/b."""

    def forward(self, a, b):
        _check_broadcast("div", a, b)
        self.a, self.b = a, b
        self.y = a / b
        return self.y

    def backward(self, grad):
        grad_a = unbroadcast(grad / self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad * self.y / self.b, _shape(self.b)) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Pow(Function):
    """y = x ** p for a constant exponent p;  dy/dx = p * x ** (p - 1)."""

    def __init__(self, exponent):
        if hasattr(exponent, "shape") or hasattr(exponent, "data"):
            raise TypeError("pow: the exponent must be a Python number (tensor exponents are not supported)")
        self.exponent = exponent

    def forward(self, x):
        self.x = x
        return x ** self.exponent

    def backward(self, grad):
        p = self.exponent
        return grad * (p * self.x ** (p - 1))


class Cast(Function):
    """Change the dtype; the gradient is cast back to the input's dtype."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.input_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, grad):
        return grad.astype(self.input_dtype)


class MatMul(Function):
    """Y = A @ B (batched over leading axes, NumPy's rules).

    For 2-D operands dL/dA = dL/dY @ B^T and dL/dB = A^T @ dL/dY: each entry
    Y_ij = sum_k A_ik B_kj touches A_ik with weight B_kj.  1-D operands are
    treated as a row (A) or a column (B) and the added axis is removed again.
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands need at least one dimension (use * for scalars)")
        inner_a = a.shape[-1]
        inner_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if inner_a != inner_b:
            raise ValueError(
                f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not match: "
                f"the last axis of the first ({inner_a}) must equal the "
                f"{'second-to-last' if b.ndim > 1 else 'only'} axis of the second ({inner_b})")
        self.a, self.b = a, b
        return get_array_module(a, b).matmul(a, b)

    def backward(self, grad):
        xp = get_array_module(grad)
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        if self.a.ndim == 1:
            grad = xp.expand_dims(grad, -2)
        if self.b.ndim == 1:
            grad = xp.expand_dims(grad, -1)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = unbroadcast(xp.matmul(grad, xp.swapaxes(b, -1, -2)), a.shape).reshape(self.a.shape)
        if self.needs_input_grad[1]:
            grad_b = unbroadcast(xp.matmul(xp.swapaxes(a, -1, -2), grad), b.shape).reshape(self.b.shape)
        return grad_a, grad_b
