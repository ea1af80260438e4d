"""Naive reference implementations shared by the tests: the formula of each op as plain loops.

Kept in one module so that tests import references by this one name instead of
from each other (two test files with the same base name in different folders
would otherwise clash on ``sys.path``).  Every function here is deliberately
slow and obvious: float64, one output element at a time, straight from the
kernel docstring's formula.
"""
import numpy as np


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Returns (y, new_running_mean, new_running_var) for x of shape (N, C, ...)."""
    x = np.asarray(x, dtype=np.float64)
    batch, channels = x.shape[:2]
    per_channel = x.reshape(batch, channels, -1)
    count = batch * per_channel.shape[2]
    y = np.empty_like(per_channel)
    new_mean = None if running_mean is None else np.array(running_mean, dtype=np.float64)
    new_var = None if running_var is None else np.array(running_var, dtype=np.float64)
    for c in range(channels):
        values = [per_channel[n, c, s] for n in range(batch) for s in range(per_channel.shape[2])]
        if training:
            mean = sum(values) / count
            variance = sum((v - mean) ** 2 for v in values) / count
            if new_mean is not None:
                new_mean[c] = (1 - momentum) * new_mean[c] + momentum * mean
                new_var[c] = (1 - momentum) * new_var[c] + momentum * variance * count / (count - 1)
        else:
            mean, variance = float(running_mean[c]), float(running_var[c])
        gamma = 1.0 if weight is None else float(weight[c])
        beta = 0.0 if bias is None else float(bias[c])
        for n in range(batch):
            for s in range(per_channel.shape[2]):
                y[n, c, s] = gamma * (per_channel[n, c, s] - mean) / np.sqrt(variance + eps) + beta
    return y.reshape(x.shape), new_mean, new_var


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    """The definition, as plainly as possible: seven nested loops.

    y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] * x[n, g*C/G + c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
    where g = o // (O/G) is the group of output channel o and x is zero outside the image.
    """
    batch, channels, height, width = x.shape
    out_channels, channels_per_group, kernel_h, kernel_w = weight.shape
    filters_per_group = out_channels // groups
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel_h - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel_w - 1) - 1) // stride[1] + 1
    y = np.zeros((batch, out_channels, out_h, out_w), dtype=np.float64)
    for n in range(batch):
        for o in range(out_channels):
            group = o // filters_per_group
            for oh in range(out_h):
                for ow in range(out_w):
                    total = 0.0 if bias is None else float(bias[o])
                    for c in range(channels_per_group):
                        for i in range(kernel_h):
                            for j in range(kernel_w):
                                h = oh * stride[0] - padding[0] + i * dilation[0]
                                w = ow * stride[1] - padding[1] + j * dilation[1]
                                if 0 <= h < height and 0 <= w < width:
                                    total += weight[o, c, i, j] * x[n, group * channels_per_group + c, h, w]
                    y[n, o, oh, ow] = total
    return y
