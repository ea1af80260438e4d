"""How a layer describes itself to ``tinynet.summary``, in the lecture notes' notation.

Every Module may override ``describe(input_shape, output_shape)`` and return a
:class:`LayerDescription`; ``summary`` prints what it gets and needs no table of
layer kinds, so a new layer (or a subclass of an old one) appears correctly
without an edit to ``summary.py``.  The helpers below write the size arithmetic
the way the notes do, from the same window geometry the kernels use
(``tinynet.kernels.geometry``).
"""
from dataclasses import dataclass

from ..kernels.geometry import output_size


@dataclass
class LayerDescription:
    """One summary row's layer-specific text and numbers (per image)."""

    text: str = ""               #: "96 11x11 filters at stride 4, pad 0"
    size_formula: str = ""       #: "(227-11)/4+1 = 55"
    params_formula: str = ""     #: "3*11*11*96+96 = 34,944" ("" = the sizes of the layer's own parameters)
    mult_adds: int = 0           #: forward multiply-adds per image
    mult_adds_formula: str = ""  #: "55*55*96*3*11*11 = 105,415,200"


def hw(values):
    """(3, 3) -> '3x3'; (4, 2) -> '4x2'."""
    return f"{values[0]}x{values[1]}"


def one_or_pair(values):
    """(4, 4) -> '4'; (4, 2) -> '4x2'."""
    return str(values[0]) if values[0] == values[1] else hw(values)


def axis_formula(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """'(227-11)/4+1 = 55', '(27+2*2-5)/1+1 = 27', 'floor((224-11)/4)+1 = 54'."""
    span = f"{dilation}*({kernel}-1)+1" if dilation != 1 else str(kernel)
    effective = dilation * (kernel - 1) + 1
    shown = span if dilation == 1 else f"({span})"
    numerator = f"{size}+2*{padding}-{shown}" if padding else f"{size}-{shown}"
    out = output_size(size, kernel, stride, padding, dilation, ceil_mode)
    if (size + 2 * padding - effective) % stride == 0:
        return f"({numerator})/{stride}+1 = {out}"
    return f"{'ceil' if ceil_mode else 'floor'}(({numerator})/{stride})+1 = {out}"


def window_formula(input_shape, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """The size arithmetic of both spatial axes of a batch-included (N, C, H, W) input, once when equal."""
    if len(input_shape) != 4:
        return ""
    axes = [axis_formula(input_shape[2 + a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode)
            for a in (0, 1)]
    same = (input_shape[2] == input_shape[3] and kernel[0] == kernel[1] and stride[0] == stride[1]
            and padding[0] == padding[1] and dilation[0] == dilation[1])
    return axes[0] if same else f"H: {axes[0]}; W: {axes[1]}"


def window_text(kernel, stride, padding, what="filters"):
    """'11x11 filters at stride 4, pad 0' (padding None: not mentioned)."""
    text = f"{hw(kernel)} {what} at stride {one_or_pair(stride)}"
    return text + (f", pad {one_or_pair(padding)}" if padding is not None else "")


def format_number(value):
    """2.0 -> '2', 0.75 -> '0.75', 0.0001 -> '1e-4' (the way the paper writes its constants)."""
    if not isinstance(value, float):
        return str(value)
    if value and abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}"


def count(value):
    """34944 -> '34,944'."""
    return f"{int(value):,}"
