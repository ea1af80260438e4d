"""Sliding-window geometry: the one place that computes output sizes and checks windows.

Convolution, im2col, max and average pooling, and ``tinynet.summary``'s size
arithmetic all slide a window of ``kernel`` taps, ``dilation`` apart, over an
axis of ``size`` values padded by ``padding`` on both sides, ``stride`` at a time.
The window spans ``dilation*(kernel-1) + 1`` values, so it fits

    out = floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1

times.  Pooling may round up instead (``ceil_mode``, Caffe's rule), but then,
as in PyTorch, the last window must start inside the input or the left padding.
"""
from typing import NamedTuple


def pair(value, name="value"):
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def output_size(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """Sliding-window output length along one axis (see the module docstring)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return span // stride + 1


def check_window(op, height, width, kernel, padding, dilation=(1, 1)):
    """The (dilated) window must fit inside the padded input."""
    padded = (height + 2 * padding[0], width + 2 * padding[1])
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ValueError(
            f"{op}: kernel {tuple(kernel)} (spanning {span}) is larger than the padded input "
            f"{padded} (input {(height, width)} with padding {tuple(padding)})")


class Window(NamedTuple):
    """A validated window: int pairs (height, width) for every setting, and the output size."""

    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    output: tuple           # (OH, OW)
    ceil_mode: bool = False


def window(op, input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
           pooling=False):
    """Check the settings of a window sliding over the last two axes of ``input_shape`` (N, C, H, W).

    ``stride=None`` means "stride = kernel" (pooling's default).  ``pooling=True``
    adds pooling's rule that padding is at most half the kernel (a window of pure
    padding would have no pixel to select or average).  Errors name ``op``.
    """
    if len(input_shape) != 4:
        raise ValueError(f"{op}: expected a 4-D input of shape (N, C, H, W), got shape {tuple(input_shape)}")
    height, width = int(input_shape[2]), int(input_shape[3])
    kernel = pair(kernel_size, "kernel_size")
    # PyTorch's functional API reads stride=None (or an empty list) as "stride = kernel"
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else pair(stride, "stride")
    padding = pair(padding, "padding")
    dilation = pair(dilation, "dilation")
    if pooling and (min(kernel) < 1 or min(stride) < 1):
        raise ValueError(f"{op}: kernel_size and stride must be positive, got kernel_size {kernel}, "
                         f"stride {stride}")
    if pooling and min(padding) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {padding}")
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(
            f"{op}: kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
            f"kernel_size={kernel}, stride={stride}, padding={padding}, dilation={dilation}")
    if pooling and (padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2):
        raise ValueError(f"{op}: padding must be at most half the kernel size, got padding {padding} "
                         f"for kernel_size {kernel}")
    check_window(op, height, width, kernel, padding, dilation)
    output = tuple(output_size(size, kernel[a], stride[a], padding[a], dilation[a], ceil_mode)
                   for a, size in enumerate((height, width)))
    return Window(kernel, stride, padding, dilation, output, bool(ceil_mode))
