"""Top-level functional forms (``tinynet.exp(x)``, ``tinynet.concat([a, b])``) and tensor makers."""
import builtins

import numpy as np

from . import backend
from .ops import activation, arithmetic, reduction, shape
from .nn.functional import log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401  (one definition)
from .tensor import Tensor


def matmul(a, b):
    return arithmetic.MatMul.apply(a, b)


def exp(x):
    return activation.Exp.apply(x)


def log(x):
    return activation.Log.apply(x)


def sqrt(x):
    return activation.Sqrt.apply(x)


def sum(x, axis=None, keepdims=False):  # noqa: A001  (mirrors numpy.sum / torch.sum)
    return reduction.Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return reduction.Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """max over axes (``Tensor.max``)."""
    return reduction.Max.apply(x, axis=axis, keepdims=keepdims)


def concat(tensors, axis=0):
    return shape.Concat.apply(*tensors, axis=axis)


cat = concat


def stack(tensors, axis=0):
    return shape.Stack.apply(*tensors, axis=axis)


def _make(values, requires_grad, device):
    return Tensor(backend.to_device(values, device or "cpu"), requires_grad=requires_grad)


def zeros(*shape, dtype=np.float32, requires_grad=False, device=None):
    return _make(np.zeros(_shape(shape), dtype=dtype), requires_grad, device)


def ones(*shape, dtype=np.float32, requires_grad=False, device=None):
    return _make(np.ones(_shape(shape), dtype=dtype), requires_grad, device)


def randn(*shape, dtype=np.float32, requires_grad=False, device=None):
    """Standard normal draws from the seeded CPU generator (so CPU and GPU runs start alike)."""
    return _make(backend.generator("cpu").normal(_shape(shape), dtype=dtype), requires_grad, device)


def rand(*shape, dtype=np.float32, requires_grad=False, device=None):
    return _make(backend.generator("cpu").uniform(_shape(shape), dtype=dtype), requires_grad, device)


def arange(*args, dtype=None, device=None):
    return _make(np.arange(*args, dtype=dtype), False, device)


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(builtins.int(n) for n in shape)
