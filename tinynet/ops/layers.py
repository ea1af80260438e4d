"""Autograd wrappers around the hand-written kernels in ``tinynet.kernels``.

Each Function here is a thin adapter: forward calls the kernel's forward and
keeps what its backward needs; backward calls the kernel's backward and asks
only for the gradients that are wanted (``needs_input_grad``), so that, for
example, the first convolution of a network never computes the gradient of the
input image.  The math and its derivation live with the kernels.
"""
from .. import backend
from ..function import Function
from ..kernels import avg_pool2d as avg_pool2d_kernels
from ..kernels import conv2d as conv2d_kernels
from ..kernels import dropout as dropout_kernels
from ..kernels import linear as linear_kernels
from ..kernels import local_response_norm as lrn_kernels
from ..kernels import max_pool2d as max_pool2d_kernels


class Conv2d(Function):
    def __init__(self, stride=1, padding=0, dilation=1, groups=1):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, weight, bias=None):
        y, self.saved = conv2d_kernels.conv2d_forward(
            x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        return y

    def backward(self, grad):
        needs = self.needs_input_grad
        grad_x, grad_w, grad_b = conv2d_kernels.conv2d_backward(
            grad, self.saved, need_input_grad=needs[0], need_weight_grad=needs[1])
        if len(needs) < 3 or not needs[2]:
            return grad_x, grad_w
        return grad_x, grad_w, grad_b


class Linear(Function):
    def forward(self, x, weight, bias=None):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        return linear_kernels.linear_forward(x, weight, bias)

    def backward(self, grad):
        needs = self.needs_input_grad
        grad_x, grad_w, grad_b = linear_kernels.linear_backward(
            grad, self.x, self.weight, need_input_grad=needs[0], need_weight_grad=needs[1],
            has_bias=self.has_bias)
        return (grad_x, grad_w, grad_b) if self.has_bias else (grad_x, grad_w)


class MaxPool2d(Function):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        self.input_shape = x.shape
        y, self.argmax = max_pool2d_kernels.max_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode)
        return y

    def backward(self, grad):
        # the window geometry lets the GPU path gather per input pixel (deterministic, no atomics)
        return max_pool2d_kernels.max_pool2d_backward(
            grad, self.argmax, self.input_shape, self.kernel_size, self.stride, self.padding)


class AvgPool2d(Function):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        self.arguments = (kernel_size, stride, padding, ceil_mode, count_include_pad)

    def forward(self, x):
        self.input_shape = x.shape
        return avg_pool2d_kernels.avg_pool2d_forward(x, *self.arguments)

    def backward(self, grad):
        return avg_pool2d_kernels.avg_pool2d_backward(grad, self.input_shape, *self.arguments)


class AdaptiveAvgPool2d(Function):
    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        self.input_shape = x.shape
        return avg_pool2d_kernels.adaptive_avg_pool2d_forward(x, self.output_size)

    def backward(self, grad):
        return avg_pool2d_kernels.adaptive_avg_pool2d_backward(grad, self.input_shape)


class LocalResponseNorm(Function):
    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, alpha_scaled_by_size=True):
        self.arguments = dict(size=size, alpha=alpha, beta=beta, k=k,
                              alpha_scaled_by_size=alpha_scaled_by_size)

    def forward(self, x):
        self.x = x
        self.y, self.scale = lrn_kernels.local_response_norm_forward(x, **self.arguments)
        return self.y

    def backward(self, grad):
        return lrn_kernels.local_response_norm_backward(grad, self.x, self.y, self.scale, **self.arguments)


class Dropout(Function):
    """The random draws come from the backend's seeded generator on the data's device."""

    def __init__(self, p=0.5, training=True, scale_in_training=True):
        self.p, self.training, self.scale_in_training = p, training, scale_in_training

    def forward(self, x):
        uniform = None
        if self.training and 0 < self.p < 1:
            uniform = backend.generator(backend.device_of(x)).uniform(x.shape, dtype=x.dtype)
        y, self.mask = dropout_kernels.dropout_forward(
            x, self.p, uniform, training=self.training, scale_in_training=self.scale_in_training)
        return y

    def backward(self, grad):
        return dropout_kernels.dropout_backward(grad, self.mask)
