"""Input checks shared by the kernels (window arithmetic lives in ``geometry.py``).

Every check raises ``ValueError`` naming the operation, what was expected and
what arrived, so that a student who wires a layer wrongly reads the fix in the
message instead of a stack of NumPy broadcasting errors.
"""


def check_4d(op, x, what="input"):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D {what} of shape (N, C, H, W), got shape {tuple(x.shape)}")


def check_floating(op, x, what="input"):
    if x.dtype.kind != "f":
        raise ValueError(f"{op}: expected a floating-point {what} (float32 or float64), got dtype {x.dtype}")


def as_planes(xp, array):
    """(N, C, H, W) -> a C-contiguous (N*C, H, W) view: one row of work per plane."""
    array = xp.ascontiguousarray(array)
    return array.reshape(array.shape[0] * array.shape[1], array.shape[2], array.shape[3])


def check_grad_output(op, grad_output, expected_shape):
    check_4d(op, grad_output, "grad_output")
    check_floating(op, grad_output, "grad_output")
    if tuple(grad_output.shape) != tuple(expected_shape):
        raise ValueError(f"{op}: expected grad_output of shape {tuple(expected_shape)}, "
                         f"got shape {tuple(grad_output.shape)}")


def checked_input_shape(op, input_shape):
    input_shape = tuple(int(size) for size in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"{op}: expected a 4-D input_shape (N, C, H, W), got {input_shape}")
    return input_shape
