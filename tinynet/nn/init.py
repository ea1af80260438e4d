"""Weight initialisers (PyTorch's ``torch.nn.init`` names), drawing from tinynet's seeded generator.

The draws are made on the CPU generator and then moved to the tensor's device,
so a model initialised after ``tinynet.manual_seed(n)`` starts from the same
numbers on the CPU and on the GPU.

    normal_       w ~ N(mean, std^2)          AlexNet paper: N(0, 0.01^2)
    xavier_*      Var(w) = 2 / (fan_in + fan_out)      (Glorot & Bengio, 2010)
    kaiming_*     Var(w) = gain^2 / fan                (He et al., 2015; gain^2 = 2 for ReLU)

fan_in of a conv weight (O, C, kh, kw) is C*kh*kw; fan_out is O*kh*kw.
"""
import math

import numpy as np

from .. import backend


def _fill(tensor, values):
    tensor.data = backend.to_device(values.astype(tensor.dtype, copy=False), tensor.device)
    return tensor


def _fans(shape):
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _draw_dtype(tensor):
    # draw in the tensor's own precision: float64 draws for a 37M-weight float32 layer waste time
    return tensor.dtype if tensor.dtype in (np.float32, np.float64) else np.float64


def uniform_(tensor, a=0.0, b=1.0):
    values = backend.generator("cpu").uniform(tensor.shape, dtype=_draw_dtype(tensor))
    return _fill(tensor, a + (b - a) * values)


def normal_(tensor, mean=0.0, std=1.0):
    values = backend.generator("cpu").normal(tensor.shape, dtype=_draw_dtype(tensor))
    return _fill(tensor, mean + std * values)


def constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value, dtype=np.float64))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    fan_in, fan_out = _fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    fan_in, fan_out = _fans(tensor.shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan_in, fan_out = _fans(tensor.shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="relu"):
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="relu"):
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def default_layer_init_(weight, bias):
    """PyTorch's default for Linear and Conv2d: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    kaiming_uniform_(weight, a=math.sqrt(5), nonlinearity="leaky_relu")
    if bias is not None:
        fan_in, _ = _fans(weight.shape)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
