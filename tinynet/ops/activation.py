"""Elementwise activations and the softmax family.

Each backward uses the derivative in terms of what the forward already
computed, which is cheaper and numerically kinder than recomputing:

    exp      y = e^x                 dy/dx = y
    log      y = ln x                dy/dx = 1/x
    sqrt     y = x^(1/2)             dy/dx = 1/(2y)
    relu     y = max(x, 0)           dy/dx = [x > 0]
    leaky    y = x or slope*x        dy/dx = 1 or slope
    sigmoid  y = 1/(1+e^-x)          dy/dx = y(1-y)      (at most 1/4: it saturates)
    tanh     y = tanh x              dy/dx = 1 - y^2
    softmax  y_i = e^x_i / sum e^x   dL/dx = y * (g - sum(g*y))
    log_softmax  y = x - logsumexp   dL/dx = g - softmax(x) * sum(g)
"""
from ..backend import get_array_module
from ..function import Function


class Exp(Function):
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, grad):
        return grad * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, grad):
        return grad / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, grad):
        return grad / (2 * self.y)


def relu(x):
    """max(x, 0) through the hand-written kernel (``tinynet.kernels.relu``); the gradient at 0 is 0."""
    from ..kernels import relu as relu_kernel
    from .kernel_function import apply_kernel
    return apply_kernel(relu_kernel, x)


class LeakyReLU(Function):
    def __init__(self, negative_slope=0.01):
        self.negative_slope = negative_slope

    def forward(self, x):
        xp = get_array_module(x)
        self.positive = x > 0
        return xp.where(self.positive, x, x * self.negative_slope)

    def backward(self, grad):
        xp = get_array_module(grad)
        return xp.where(self.positive, grad, grad * self.negative_slope)


class Sigmoid(Function):
    def forward(self, x):
        xp = get_array_module(x)
        # tanh form: 1/(1+e^-x) = (1 + tanh(x/2)) / 2, which never overflows for large |x|
        self.y = 0.5 * (xp.tanh(0.5 * x) + 1)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


class Tanh(Function):
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


def stable_log_softmax(x, axis):
    """x - logsumexp(x): subtracting the maximum first keeps exp() from overflowing."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        shifted = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = shifted / shifted.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, grad):
        y = self.y
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        self.y = stable_log_softmax(x, self.axis)
        return self.y

    def backward(self, grad):
        xp = get_array_module(grad)
        return grad - xp.exp(self.y) * grad.sum(axis=self.axis, keepdims=True)
