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

