"""Functional forms of the layers (PyTorch's ``torch.nn.functional`` names and argument order).

Each function applies one autograd Function -- for the layers backed by a kernel in
``tinynet.kernels``, the generic :func:`~tinynet.ops.kernel_function.apply_kernel`;
the ``nn`` layer classes hold parameters and call these.
"""
from .. import backend
from ..kernels import (adaptive_avg_pool2d as adaptive_avg_pool2d_kernel, avg_pool2d as avg_pool2d_kernel,
                       batch_norm as batch_norm_kernel, conv2d as conv2d_kernel, dropout as dropout_kernel,
                       linear as linear_kernel, local_response_norm as local_response_norm_kernel,
                       max_pool2d as max_pool2d_kernel)
from ..ops import activation, loss
from ..ops.kernel_function import apply_kernel
from ..tensor import Tensor


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


def relu(x):
    return activation.relu(x)


def leaky_relu(x, negative_slope=0.01):
    return activation.LeakyReLU.apply(x, negative_slope=negative_slope)


def sigmoid(x):
    return activation.Sigmoid.apply(x)


def tanh(x):
    return activation.Tanh.apply(x)


def softmax(x, dim=-1):
    return activation.Softmax.apply(x, axis=dim)


def log_softmax(x, dim=-1):
    return activation.LogSoftmax.apply(x, axis=dim)


def cross_entropy(logits, targets, label_smoothing=0.0, reduction="mean"):
    """Mean softmax cross-entropy of ``logits`` (N, K) against integer class ``targets`` (N,)."""
    return loss.CrossEntropy.apply(logits, targets=_raw(targets), label_smoothing=label_smoothing,
                                   reduction=reduction)


def linear(x, weight, bias=None):
    """y = x W^T + b with W of shape (out_features, in_features)."""
    return apply_kernel(linear_kernel, x, weight, bias)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with weight (O, C/groups, kh, kw)."""
    return apply_kernel(conv2d_kernel, x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    return apply_kernel(max_pool2d_kernel, x, kernel_size=kernel_size, stride=stride, padding=padding,
                        ceil_mode=ceil_mode)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return apply_kernel(avg_pool2d_kernel, x, kernel_size=kernel_size, stride=stride, padding=padding,
                        ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def adaptive_avg_pool2d(x, output_size):
    return apply_kernel(adaptive_avg_pool2d_kernel, x, output_size=output_size)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0, alpha_scaled_by_size=True):
    """Normalise across ``size`` neighbouring channels.

    ``alpha_scaled_by_size=True`` divides alpha by size (PyTorch, Caffe); False uses
    alpha as written in the AlexNet paper.  See ``tinynet.kernels.local_response_norm``.
    """
    return apply_kernel(local_response_norm_kernel, x, size=size, alpha=alpha, beta=beta, k=k,
                        alpha_scaled_by_size=alpha_scaled_by_size)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Normalise every channel (axis 1) of ``x``; see ``tinynet.kernels.batch_norm`` for the math.

    In training the batch's statistics are used and ``running_mean``/``running_var`` (arrays,
    or None) are updated in place; in evaluation the running statistics are used.
    """
    return apply_kernel(batch_norm_kernel, x, weight, bias, running_mean=_raw(running_mean),
                        running_var=_raw(running_var), training=training, momentum=momentum, eps=eps)


def dropout(x, p=0.5, training=True, scale_in_training=True):
    """Drop each element with probability ``p``; see ``tinynet.kernels.dropout`` for the two variants."""
    data = _raw(x)
    uniform = None
    if training and 0 < p < 1:
        # the draws come from the seeded generator of the device the data lives on
        uniform = backend.generator(backend.device_of(data)).uniform(data.shape, dtype=data.dtype)
    return apply_kernel(dropout_kernel, x, p=p, uniform=uniform, training=training,
                        scale_in_training=scale_in_training)


def flatten(x, start_dim=1, end_dim=-1):
    return x.flatten(start_dim, end_dim)
