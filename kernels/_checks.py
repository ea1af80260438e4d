"""Shape arithmetic and input checks shared by the kernels.

Every check raises ``ValueError`` naming the operation, what was expected and
what arrived, so that a student who wires a layer wrongly reads the fix in the
message instead of a stack of NumPy broadcasting errors.
"""


def pair(value, name="value"):
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def output_size(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """Sliding-window output length: floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1.

    With ``ceil_mode`` the division rounds up, but (as in PyTorch) the last window
    must start inside the input or the left padding.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return span // stride + 1


def check_4d(op, x, what="input"):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D {what} of shape (N, C, H, W), got shape {tuple(x.shape)}")


def check_floating(op, x, what="input"):
    if x.dtype.kind != "f":
        raise ValueError(f"{op}: expected a floating-point {what} (float32 or float64), got dtype {x.dtype}")


def check_window(op, height, width, kernel, padding, dilation=(1, 1)):
    """The (dilated) window must fit inside the padded input."""
    padded = (height + 2 * padding[0], width + 2 * padding[1])
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    if span[0] > padded[0] or span[1] > padded[1]:
        raise ValueError(
            f"{op}: kernel {tuple(kernel)} (spanning {span}) is larger than the padded input "
            f"{padded} (input {(height, width)} with padding {tuple(padding)})")
