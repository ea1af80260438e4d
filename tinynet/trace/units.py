"""The arithmetic of one unit, written out with the numbers a trace recorded.

``explain_unit(record, unit)`` returns the forward and the backward of one output value of a
layer as *steps*, each a title and lines of text in which every number is a token
``[name, "1.2345"]``: the page shows the tokens as they are (the math is done here, in
Python, never in the browser), and a test reads them back by name.  ``unit`` is
``(channel, y, x)`` for image-shaped outputs and ``(index,)`` for vectors.

Per kind of layer (the recorded input, output and gradients of batch sample 0):

* Conv2d: the input patch (the im2col row), the filter, the dot product, the bias; backward:
  the gradient arriving, its share to the bias, to the filter (gradient x patch) and to the
  inputs (gradient x filter);
* ReLU: the clamp max(0, x); backward: the gate;
* LocalResponseNorm: the sum of squares over the neighbouring channels, k + alpha'*sum, the power
  beta, the division; backward: the derivative to the unit's own input and to its neighbours;
* MaxPool2d: the window and its maximum; backward: the routing to the argmax;
* AvgPool2d / AdaptiveAvgPool2d: the window and its mean;
* Linear: the largest contributions w*x, their sum and the bias; backward: to inputs and weights;
* BatchNorm (evaluation): (x - mean) / sqrt(var + eps) * gamma + beta;
* anything else: the value (and the input value, where the layer keeps the shape).

Vectors too long to show whole (a patch of more than ``FULL_VECTOR_LIMIT`` values) are shown
by their largest contributions.
"""
import math

import numpy as np

from .. import backend

__all__ = ["explain_unit", "softmax_steps", "unit_grid", "as_text", "FULL_VECTOR_LIMIT", "fmt"]

#: a dot product of at most this many terms is shown whole (input patch and filter)
FULL_VECTOR_LIMIT = 600
#: how many of the largest terms are listed otherwise (and for every backward share)
TOP_TERMS = 8
#: how many of the largest shares each backward table lists
BACKWARD_TERMS = 5


def fmt(value):
    """A number as the page shows it: 6 significant digits."""
    value = float(value)
    if value == 0:
        return "0"
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return f"{value:.6g}"


def num(name, value):
    return [name, fmt(value)]


def _arr(a):
    return None if a is None else np.asarray(backend.to_numpy(a))


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def unit_grid(shape, channels=16, grid=3, top=8):
    """The units a page explains: for (N, C, H, W) outputs the first ``channels`` channels at a
    ``grid`` x ``grid`` lattice of positions; for (N, F) the first and the largest ``top``."""
    if len(shape) == 4:
        _, c, h, w = shape
        ys = sorted({int(round(v)) for v in np.linspace(0, h - 1, min(grid, h))})
        xs = sorted({int(round(v)) for v in np.linspace(0, w - 1, min(grid, w))})
        return [(ch, y, x) for ch in range(min(c, channels)) for y in ys for x in xs], [(y, x) for y in ys for x in xs]
    return None, None


def vector_units(values, top=8):
    values = np.asarray(values).ravel()
    first = set(range(min(len(values), top)))
    largest = set(int(i) for i in np.argsort(-values, kind="stable")[:top])
    return sorted(first | largest)


# --------------------------------------------------------------------------- helpers
def _step(title, lines=(), table=None, vectors=None, note=None):
    step = {"title": title, "lines": [list(line) for line in lines]}
    if table is not None:
        step["table"] = table
    if vectors:
        step["vectors"] = vectors
    if note:
        step["note"] = note
    return step


def _top_table(header, entries, names):
    """A table of the largest terms: ``entries`` are tuples (label, value, value, ...)."""
    rows = []
    for entry in entries:
        label, values = entry[0], entry[1:]
        rows.append([label] + [num(n, v) for n, v in zip(names, values)])
    return {"header": header, "rows": rows}


def _largest(values, count=None):
    count = TOP_TERMS if count is None else count
    values = np.asarray(values)
    return [int(i) for i in np.argsort(-np.abs(values), kind="stable")[:count]]


def _grad_at(array, index):
    if array is None:
        return None
    try:
        return float(array[index])
    except IndexError:          # a channel the trace did not keep
        return None


def _arriving(record, index):
    g = _grad_at(record.grad_output, index)
    if g is None:
        return None, [_step("Gradient arriving", [["no gradient reached this unit (none recorded)"]])]
    return g, [_step("Gradient arriving", [["∂loss/∂out = ", num("grad_out", g)]])]


# --------------------------------------------------------------------------- layers
def _conv(record, unit, store):
    m = record.module
    c, y, x = unit
    weight = _arr(m.weight.data)
    bias = _arr(m.bias.data) if m.bias is not None else None
    (kh, kw), (sh, sw) = _pair(m.kernel_size), _pair(m.stride)
    (ph, pw), (dh, dw) = _pair(m.padding), _pair(m.dilation)
    out_c, cg = weight.shape[0], weight.shape[1]
    group = c // (out_c // m.groups)
    first = group * cg
    image = _arr(record.input)[0, first:first + cg]
    patch = np.zeros((cg, kh, kw))                       # (cg, kh, kw): the im2col row, zero padding outside
    for i in range(kh):
        r = y * sh - ph + i * dh
        if not 0 <= r < image.shape[1]:
            continue
        for j in range(kw):
            s = x * sw - pw + j * dw
            if 0 <= s < image.shape[2]:
                patch[:, i, j] = image[:, r, s]
    filt = weight[c].astype(np.float64)
    products = (patch * filt).ravel()
    dot = float(products.sum())
    b = float(bias[c]) if bias is not None else 0.0
    value = float(record.output[0, c, y, x])
    length = products.size
    top, left = y * sh - ph, x * sw - pw
    where = (f"input channels {first}..{first + cg - 1}, rows {top}..{top + dh * (kh - 1)}, "
             f"columns {left}..{left + dw * (kw - 1)} of the {record.input_shape[2]}x{record.input_shape[3]} input"
             + (" (zero padding outside it)" if ph or pw else ""))
    forward = []
    vectors = None
    if length <= FULL_VECTOR_LIMIT:
        pkey, fkey = f"patch/{record.index}/{y}/{x}", f"filter/{record.index}/{c}"
        store.setdefault(pkey, {"shape": list(patch.shape), "values": [fmt(v) for v in patch.ravel()],
                                "labels": [f"ch {first + i}" for i in range(cg)]})
        store.setdefault(fkey, {"shape": list(filt.shape), "values": [fmt(v) for v in filt.ravel()],
                                "labels": [f"ch {first + i}" for i in range(cg)]})
        vectors = [{"name": "patch", "key": pkey, "title": "input patch x"},
                   {"name": "filter", "key": fkey, "title": f"filter w of channel {c}"}]
    forward.append(_step("Input patch: the im2col row",
                         [[f"{cg}·{kh}·{kw} = ", num("length", length), f" values: {where}"]], vectors=vectors))
    order = _largest(products)
    entries = []
    for i in order:
        ci, ii, jj = np.unravel_index(i, patch.shape)
        entries.append((f"ch {first + ci}, ({top + ii * dh}, {left + jj * dw})", patch.ravel()[i], filt.ravel()[i],
                        products[i]))
    forward.append(_step("Dot product of the patch and the filter",
                         [["Σ x·w over ", num("terms", length), " terms = ", num("dot", dot)],
                          ["positive terms: ", num("positive", products[products > 0].sum()), ", negative terms: ",
                           num("negative", products[products < 0].sum())]],
                         table=_top_table(["largest terms (input channel, row, column)", "x", "w", "x·w"], entries,
                                          ["x", "w", "xw"])))
    forward.append(_step("Plus the bias",
                         [["dot + b = ", num("dot", dot), " + ", num("bias", b), " = ", num("sum", dot + b)],
                          ["tinynet's convolution kernel computed ", num("value", value)]]))
    g, backward = _arriving(record, (0, c, y, x))
    if g is not None:
        backward.append(_step("To the bias", [["∂loss/∂b[", str(c), "] gets ", num("grad_bias_share", g),
                                               " from this unit"]] + (
            [["whole layer: ∂loss/∂b[", str(c), "] = ", num("grad_bias_total", record.weight_grads["bias"][c])]]
            if "bias" in record.weight_grads and c < len(record.weight_grads["bias"]) else [])))
        dw_share = g * patch.ravel()
        rows_w = []
        for i in _largest(dw_share, BACKWARD_TERMS):
            ci, ii, jj = np.unravel_index(i, patch.shape)
            rows_w.append((f"w[{c}, {ci}, {ii}, {jj}]", g, patch.ravel()[i], dw_share[i]))
        extra = []
        if "weight" in record.weight_grads and c < len(record.weight_grads["weight"]):
            extra = [["whole layer: |∂loss/∂w| of filter ", str(c), " = ",
                      num("grad_filter_norm", np.linalg.norm(record.weight_grads["weight"][c].astype(np.float64))),
                      " (every position's share added)"]]
        backward.append(_step("To the filter: gradient × patch",
                              [["∂loss/∂w += g · x: this unit's share has norm ",
                                num("grad_w_share_norm", np.linalg.norm(dw_share))]] + extra,
                              table=_top_table(["largest shares", "g", "x", "g·x"], rows_w, ["g", "x", "gx"])))
        dx_share = g * filt.ravel()
        rows_x = []
        for i in _largest(dx_share, BACKWARD_TERMS):
            ci, ii, jj = np.unravel_index(i, patch.shape)
            rows_x.append((f"x[ch {first + ci}, ({top + ii * dh}, {left + jj * dw})]", g, filt.ravel()[i],
                           dx_share[i]))
        backward.append(_step("To the inputs: gradient × filter",
                              [["each input of the patch gets g · w (col2im adds the shares of every "
                                "position that saw it)"]],
                              table=_top_table(["largest shares", "g", "w", "g·w"], rows_x, ["g", "w", "gw"])))
    return forward, backward


def _relu(record, unit, store):
    index = (0,) + tuple(unit)
    x = float(record.input[index])
    value = float(record.output[index])
    forward = [_step("Clamp at zero", [["max(0, x) = max(0, ", num("x", x), ") = ", num("value", value)]])]
    g, backward = _arriving(record, index)
    if g is not None:
        gate = 1 if x > 0 else 0
        lines = [["gate = [x > 0] = ", num("gate", gate), ", ∂loss/∂x = g · gate = ", num("grad_in", g * gate)]]
        recorded = _grad_at(record.grad_input, index)
        if recorded is not None:
            lines.append(["tinynet's backward gave ∂loss/∂x = ", num("grad_in_recorded", recorded)])
        backward.append(_step("ReLU gates the gradient", lines))
    return forward, backward


def _lrn(record, unit, store):
    m = record.module
    c, y, x = unit
    column = _arr(record.input)[0, :, y, x].astype(np.float64)
    channels = column.size
    low, high = max(0, c - m.size // 2), min(channels - 1, c + (m.size - 1) // 2)
    window = column[low:high + 1]
    squares = window ** 2
    total = float(squares.sum())
    alpha = m.alpha / m.size if m.alpha_scaled_by_size else m.alpha
    scale = m.k + alpha * total
    power = scale ** m.beta
    a = float(column[c])
    result = a / power
    value = float(record.output[0, c, y, x])
    rows = [[f"channel {j}", num("a", column[j]), num("a2", column[j] ** 2)] for j in range(low, high + 1)]
    alpha_text = "α/n" if m.alpha_scaled_by_size else "α"
    alpha_note = ([f"α/n = {fmt(m.alpha)}/{m.size} (alpha_scaled_by_size, as in PyTorch and Caffe)"]
                  if m.alpha_scaled_by_size else [f"α = {fmt(m.alpha)} multiplies the plain sum (the paper's formula)"])
    forward = [
        _step("Sum of squares over the neighbouring channels",
              [["channels ", num("low", low), " .. ", num("high", high), " (n = ", num("n", m.size),
                ", clipped at the edges): Σ a² = ", num("sum_squares", total)]],
              table={"header": ["channel", "a", "a²"], "rows": rows}),
        _step("Scale", [["k + ", alpha_text, "·Σ = ", num("k", m.k), " + ", num("alpha_eff", alpha), " · ",
                         num("sum_squares", total), " = ", num("scale", scale)], alpha_note]),
        _step("Power β", [["scale^β = ", num("scale", scale), "^", num("beta", m.beta), " = ", num("power", power)]]),
        _step("Division", [["a / scale^β = ", num("a", a), " / ", num("power", power), " = ", num("result", result)],
                           ["tinynet's LRN kernel computed ", num("value", value)]]),
    ]
    g, backward = _arriving(record, (0, c, y, x))
    if g is not None:
        table = []
        for j in range(low, high + 1):
            d = (scale ** -m.beta if j == c else 0.0) - 2 * alpha * m.beta * column[j] * result / scale
            table.append([f"channel {j}" + (" (itself)" if j == c else ""), num("x", column[j]), num("dydx", d),
                          num("share", g * d)])
        backward.append(_step("Through the normalisation",
                              [["∂y/∂x_j = [j = c]·scale^-β − 2·α'·β·x_j·y/scale; each input of the window gets "
                                "g · ∂y/∂x_j"]], table={"header": ["input", "x_j", "∂y/∂x_j", "g·∂y/∂x_j"],
                                                         "rows": table}))
    return forward, backward


def _window(record, unit):
    m = record.module
    c, y, x = unit
    (kh, kw), (sh, sw) = _pair(m.kernel_size), _pair(m.stride)
    (ph, pw) = _pair(getattr(m, "padding", 0))
    image = _arr(record.input)[0, c].astype(np.float64)
    top, left = y * sh - ph, x * sw - pw
    cells = []
    for i in range(kh):
        row = []
        for j in range(kw):
            r, s = top + i, left + j
            inside = 0 <= r < image.shape[0] and 0 <= s < image.shape[1]
            row.append((r, s, image[r, s] if inside else None))
        cells.append(row)
    return cells, top, left


def _max_pool(record, unit, store):
    c, y, x = unit
    cells, top, left = _window(record, unit)
    inside = [(r, s, v) for row in cells for (r, s, v) in row if v is not None]
    best = max(inside, key=lambda t: t[2])      # the first maximum in row-major order
    value = float(record.output[0, c, y, x])
    table = {"header": [""] + [f"col {left + j}" for j in range(len(cells[0]))],
             "rows": [[f"row {top + i}"] + [num("window", v) if v is not None else "pad" for (_, _, v) in row]
                      for i, row in enumerate(cells)]}
    forward = [_step("The window", [["channel ", str(c), ", rows ", num("top", top), " .. ", num("bottom", top + len(cells) - 1),
                                     ", columns ", num("left", left), " .. ", num("right", left + len(cells[0]) - 1)]],
                     table=table),
               _step("Its maximum", [["max = ", num("max", best[2]), " at (", num("argmax_row", best[0]), ", ",
                                      num("argmax_col", best[1]), ")"],
                                     ["tinynet's pooling kernel computed ", num("value", value)]])]
    g, backward = _arriving(record, (0, c, y, x))
    if g is not None:
        lines = [["all of g = ", num("grad_out", g), " goes to the argmax (", str(best[0]), ", ", str(best[1]),
                  "); the other inputs of the window get 0 from this unit"]]
        recorded = _grad_at(record.grad_input, (0, c, best[0], best[1]))
        if recorded is not None:
            lines.append(["that input's whole gradient (every window that picked it): ",
                          num("grad_in_recorded", recorded)])
        backward.append(_step("Max pooling routes the gradient", lines))
    return forward, backward


def _avg_pool(record, unit, store):
    c, y, x = unit
    m = record.module
    if hasattr(m, "output_size"):
        h_in, w_in = record.input_shape[2:]
        h_out, w_out = record.output_shape[2:]
        r0, r1 = (y * h_in) // h_out, -((-(y + 1) * h_in) // h_out)
        c0, c1 = (x * w_in) // w_out, -((-(x + 1) * w_in) // w_out)
        window = _arr(record.input)[0, c, r0:r1, c0:c1].astype(np.float64)
        top, left = r0, c0
        values = window.ravel()
        divisor = values.size
    else:
        cells, top, left = _window(record, unit)
        values = np.array([v if v is not None else 0.0 for row in cells for (_, _, v) in row])
        window = values.reshape(len(cells), len(cells[0]))
        divisor = values.size if getattr(m, "count_include_pad", True) else sum(v is not None for row in cells for (_, _, v) in row)
    mean = float(values.sum() / divisor)
    value = float(record.output[0, c, y, x])
    table = {"header": [""] + [f"col {left + j}" for j in range(window.shape[1])],
             "rows": [[f"row {top + i}"] + [num("window", v) for v in window[i]] for i in range(window.shape[0])]}
    forward = [_step("The window and its mean", [["Σ / ", num("count", divisor), " = ", num("window_sum", values.sum()), " / ",
                                                  str(divisor), " = ", num("mean", mean)],
                                                 ["tinynet computed ", num("value", value)]], table=table)]
    g, backward = _arriving(record, (0, c, y, x))
    if g is not None:
        backward.append(_step("Averaging spreads the gradient",
                              [["each of the ", str(divisor), " inputs gets g / ", str(divisor), " = ",
                                num("share", g / divisor)]]))
    return forward, backward


def _linear(record, unit, store):
    m = record.module
    (u,) = unit
    x = _arr(record.input)[0].astype(np.float64).ravel()
    w = _arr(m.weight.data)[u].astype(np.float64)
    b = float(_arr(m.bias.data)[u]) if m.bias is not None else 0.0
    products = x * w
    dot = float(products.sum())
    value = float(record.output[0, u])
    entries = [(f"input {i}", x[i], w[i], products[i]) for i in _largest(products)]
    forward = [_step("Largest contributions w·x",
                     [["Σ over ", num("terms", x.size), " inputs = ", num("dot", dot), " (positive ",
                       num("positive", products[products > 0].sum()), ", negative ",
                       num("negative", products[products < 0].sum()), ")"]],
                     table=_top_table(["input", "x", "w", "x·w"], entries, ["x", "w", "xw"])),
               _step("Plus the bias", [["dot + b = ", num("dot", dot), " + ", num("bias", b), " = ", num("sum", dot + b)],
                                       ["tinynet's matrix product computed ", num("value", value)]])]
    g, backward = _arriving(record, (0, u))
    if g is not None:
        rows_x = [(f"x[{i}]", g, w[i], g * w[i]) for i in _largest(g * w, BACKWARD_TERMS)]
        rows_w = [(f"w[{u}, {i}]", g, x[i], g * x[i]) for i in _largest(g * x, BACKWARD_TERMS)]
        backward.append(_step("To the inputs: g · w", [["each input i gets g · w[i]"]],
                              table=_top_table(["largest shares", "g", "w", "g·w"], rows_x, ["g", "w", "gw"])))
        backward.append(_step("To the weights: g · x", [["row ", str(u), " of ∂loss/∂W is g · x; ∂loss/∂b = g = ",
                                                         num("grad_bias_share", g)]],
                              table=_top_table(["largest", "g", "x", "g·x"], rows_w, ["g", "x", "gx"])))
    return forward, backward


def _batch_norm(record, unit, store):
    m = record.module
    index = (0,) + tuple(unit)
    c = unit[0]
    x = float(record.input[index])
    value = float(record.output[index])
    mean, var = float(m.running_mean[c]), float(m.running_var[c])
    gamma = float(_arr(m.weight.data)[c]) if m.weight is not None else 1.0
    beta = float(_arr(m.bias.data)[c]) if m.bias is not None else 0.0
    normalised = (x - mean) / math.sqrt(var + m.eps)
    forward = [_step("Normalise with the running statistics",
                     [["(x − μ)/√(σ² + ε) = (", num("x", x), " − ", num("running_mean", mean), ")/√(", num("running_var", var), " + ",
                       num("eps", m.eps), ") = ", num("normalised", normalised)],
                      ["· γ + β = ", num("normalised", normalised), " · ", num("gamma", gamma), " + ", num("beta", beta),
                       " = ", num("result", normalised * gamma + beta)],
                      ["tinynet computed ", num("value", value)]])]
    g, backward = _arriving(record, index)
    if g is not None:
        backward.append(_step("Through the normalisation (evaluation mode)",
                              [["∂loss/∂x = g · γ/√(σ² + ε) = ", num("grad_in", g * gamma / math.sqrt(var + m.eps))]]))
    return forward, backward


def _generic(record, unit, store):
    index = (0,) + tuple(unit)
    value = float(record.output[index])
    lines = [["output value ", num("value", value)]]
    same = tuple(record.input_shape) == tuple(record.output_shape)
    if same and record.input is not None:
        lines.insert(0, ["input value ", num("x", record.input[index])])
    elif record.input is not None and len(record.output_shape) == 2 and len(record.input_shape) == 4:
        c, h, w = record.input_shape[1:]
        ci, yi, xi = np.unravel_index(unit[0], (c, h, w))
        lines.insert(0, [f"input ({ci}, {yi}, {xi}) of the {h}x{w}x{c} volume, read row by row: ",
                         num("x", record.input[0, ci, yi, xi])])
    forward = [_step(f"{record.kind}", lines)]
    g, backward = _arriving(record, index)
    return forward, backward


_BY_KIND = {"Conv2d": _conv, "ReLU": _relu, "LocalResponseNorm": _lrn, "MaxPool2d": _max_pool,
            "AvgPool2d": _avg_pool, "AdaptiveAvgPool2d": _avg_pool, "Linear": _linear,
            "BatchNorm2d": _batch_norm, "BatchNorm1d": _batch_norm}


def explain_unit(record, unit, store=None):
    """``{"forward": [steps], "backward": [steps]}`` for output ``unit`` of ``record`` (sample 0).

    ``store`` collects long vectors (patches, filters) shared by several units, by key.
    """
    store = {} if store is None else store
    kind = record.kind
    explain = _BY_KIND.get(kind)
    if explain is None:
        for cls in type(record.module).__mro__:
            explain = _BY_KIND.get(cls.__name__)
            if explain is not None:
                break
    if kind.startswith("BatchNorm") and record.training:      # batch statistics: not the running ones
        explain = None
    if explain is _conv and (record.module.weight is None):
        explain = None
    forward, backward = (explain or _generic)(record, tuple(int(u) for u in unit), store)
    return {"forward": forward, "backward": backward}


def softmax_steps(logits, target, classes=None):
    """The softmax of sample 0's logits, its loss and its gradient, as steps."""
    z = np.asarray(logits, dtype=np.float64)[0]
    names = classes or [str(i) for i in range(z.size)]
    top = float(z.max())
    e = np.exp(z - top)
    total = float(e.sum())
    p = e / total
    t = int(np.asarray(target).ravel()[0])
    rows = [[names[i], num("z", z[i]), num("shifted", z[i] - top), num("exp", e[i]), num("p", p[i]),
             num("grad", p[i] - (1.0 if i == t else 0.0))] for i in range(z.size)]
    return [
        _step("Exponentials", [["subtract the largest logit ", num("max", top),
                                " (the result is the same, and exp cannot overflow), then exp"]],
              table={"header": ["class", "logit z", "z − max", "exp(z − max)", "p = exp/Σ", "∂loss/∂z = p − [target]"],
                     "rows": rows}),
        _step("Their sum", [["Σ exp = ", num("sum_exp", total)]]),
        _step("The loss", [["target class ", names[t], ": loss = −log p = −log ", num("p_target", p[t]), " = ",
                            num("loss", -math.log(p[t]))]]),
    ]


def as_text(steps, vectors=False):
    """Steps as plain text lines (what the page shows, for a terminal or a test); a table's rows
    are indented under its step, long vectors are left out unless ``vectors``."""
    out = []
    for step in steps:
        out.append(f"{step['title']}:")
        for line in step["lines"]:
            out.append("  " + "".join(t if isinstance(t, str) else t[1] for t in line))
        table = step.get("table")
        if table:
            cells = [table["header"]] + [[c if isinstance(c, str) else c[1] for c in row] for row in table["rows"]]
            widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
            for row in cells:
                out.append("    " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                                              enumerate(zip(row, widths))).rstrip())
    return out
