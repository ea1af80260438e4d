"""``tinynet.summary``: a model's layers in the lecture notes' notation, with the arithmetic shown.

    >>> from tinynet import nn
    >>> from tinynet.summary import summary       # also tinynet.summary
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    >>> s = summary(net, (3, 8, 8))
    >>> s.total_params
    1514
    >>> [row.label for row in s.rows]
    ['INPUT', 'CONV1', 'RELU1', 'MAX POOL1', 'FLATTEN1', 'FC1']
    >>> s.rows[1].params_formula
    '3*3*3*8+8 = 224'
    >>> s.rows[1].size_formula
    '(8+2*1-3)/1+1 = 8'

How it works
------------
``summary(model, input_shape)`` runs one forward pass of a batch of one zero
image through the model (in eval mode and under ``no_grad``; the modes are
restored afterwards) with a forward hook on every leaf module -- a module with
no children, or one that owns parameters directly.  Each hook sees the layer's
input and output, so the table lists the layers in the order the forward pass
*calls* them, with the shapes they really produced: it works for any model
built from tinynet layers, whatever its ``forward`` does, not only for
``Sequential`` stacks.  A layer called twice (shared weights) gets two rows,
its parameters counted in the first; a module that owns parameters besides
its children gets a row of its own after theirs.

Every layer describes itself: ``module.describe(input_shape, output_shape)`` returns a
:class:`~tinynet.nn.description.LayerDescription`, and ``module.summary_label`` is the
stem of its label, so a new layer (or a subclass of an old one) needs no edit here.
For the built-in layers every row shows (all numbers are per image):

* the output volume in the notes' notation, ``[H x W x C]`` for images
  (``[55x55x96]``) and ``[F]`` for feature vectors (``[4096]``), and the layer
  described as in the notes (``CONV1: 96 11x11 filters at stride 4, pad 0``).
  The label comes from the module's name in the model (``features.conv1`` ->
  ``CONV1``, ``features.pool1`` -> ``MAX POOL1``); modules named by position
  (``Sequential`` indices ``0``, ``1``...) are labelled by kind and counted
  (``CONV1``, ``CONV2``..., ``FC1``...).
* the size arithmetic of sliding windows, one spatial axis (both when they
  differ):

      out = (in + 2*pad - kernel) / stride + 1            e.g. (227-11)/4+1 = 55

  written as ``floor(...)`` when the division is not exact (a 224 px input
  gives floor((224-11)/4)+1 = 54: the stride does not tile the image), and
  with ``dilation*(kernel-1)+1`` in place of the kernel for dilated filters.
* the parameter count with its formula:

      Conv2d:  (C/groups)*kh*kw*O + O       e.g. 3*11*11*96+96 = 34,944
      Linear:  in*out + out                 e.g. 9216*4096+4096 = 37,752,832

  (for any other module, the sum of the sizes of its own parameters).
* the activations: the number of output values and their memory in the
  output's dtype (the forward pass keeps them for the backward pass).
* the multiply-adds of the forward pass, counted for the layers that are dot
  products:

      Conv2d:  OH*OW*O*(C/groups)*kh*kw     (one dot product of length (C/groups)*kh*kw per output)
      Linear:  in*out                        (per sample)

  Pooling, normalisation and activation functions do a few operations per
  value; they are not multiply-adds and are reported as 0 ("-").

Totals at the bottom: the parameters (``model.num_parameters()``, so a
parameter the forward pass never used is still counted, and said so), the
activations and the multiply-adds.  ``Summary`` prints as the table and keeps
the numbers in ``.rows`` (``SummaryRow`` objects) and ``.total_*``.
"""
from dataclasses import dataclass, field

import numpy as np

from . import backend
from .function import no_grad, recording_ops
from .tensor import Tensor

__all__ = ["summary", "Summary", "SummaryRow"]


@dataclass
class SummaryRow:
    """One layer of a :class:`Summary` (numbers per image)."""

    name: str                   #: dotted name in the model ("features.conv1"; "" for the input)
    label: str                  #: the notes' label ("CONV1", "MAX POOL1", "FC8")
    kind: str                   #: the module's class name ("Conv2d"; "Input" for the input row)
    output_shape: tuple         #: per-image output shape, PyTorch order ((96, 55, 55))
    volume: str                 #: the notes' notation ("[55x55x96]")
    description: str            #: "96 11x11 filters at stride 4, pad 0"
    size_formula: str = ""      #: "(227-11)/4+1 = 55"
    params: int = 0             #: parameters owned by this layer (0 if counted in an earlier row)
    params_formula: str = ""    #: "3*11*11*96+96 = 34,944"
    activations: int = 0        #: output values per image
    activation_bytes: int = 0   #: their memory in the output's dtype
    mult_adds: int = 0          #: forward multiply-adds per image
    mult_adds_formula: str = ""  #: "55*55*96*3*11*11 = 105,415,200"
    input_shape: tuple = field(default=())  #: per-image input shape

    @property
    def text(self):
        """``[55x55x96] CONV1: 96 11x11 filters at stride 4, pad 0`` (the line of the notes)."""
        return f"{self.volume} {self.label}" + (f": {self.description}" if self.description else "")


class Summary:
    """The result of :func:`summary`: prints as a table, exposes ``rows`` and the totals."""

    def __init__(self, model_name, input_shape, rows, total_params, unused_params, dtype):
        self.model_name = model_name
        self.input_shape = tuple(input_shape)
        self.rows = list(rows)
        self.total_params = int(total_params)
        self.unused_params = int(unused_params)
        self.dtype = np.dtype(dtype)
        self.total_activations = sum(r.activations for r in self.rows)
        self.total_activation_bytes = sum(r.activation_bytes for r in self.rows)
        self.total_mult_adds = sum(r.mult_adds for r in self.rows)

    @property
    def layers(self):
        """The rows without the input row."""
        return [r for r in self.rows if r.kind != "Input"]

    def __getitem__(self, key):
        """A row by position, by dotted name ("features.conv1") or by label ("CONV1")."""
        if isinstance(key, (int, slice)):
            return self.rows[key]
        for row in self.rows:
            if key in (row.name, row.label):
                return row
        raise KeyError(f"summary: no row named or labelled {key!r}; rows: "
                       f"{[r.name or r.label for r in self.rows]}")

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def lines(self):
        headers = ("layer", "output volume and layer", "size arithmetic", "parameters",
                   "activations", "multiply-adds")
        cells = [(r.name or "-", r.text, r.size_formula or "-", r.params_formula or "-",
                  f"{r.activations:,} ({_bytes(r.activation_bytes)})", f"{r.mult_adds:,}" if r.mult_adds else "-")
                 for r in self.rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        right = {4, 5}

        def line(values):
            return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                             for i, (v, w) in enumerate(zip(values, widths))).rstrip()

        rule = "-" * len(line(["x" * w for w in widths]))
        out = [f"{self.model_name}: input {_volume((1,) + self.input_shape)}, "
               f"{self.dtype.name}, per image", rule, line(headers), rule]
        out += [line(c) for c in cells]
        out.append(rule)
        itemsize = self.dtype.itemsize
        out.append(f"total parameters:    {self.total_params:,} "
                   f"({_bytes(self.total_params * itemsize)} in {self.dtype.name})")
        if self.unused_params:
            out.append(f"  of which {self.unused_params:,} not used by the forward pass")
        out.append(f"total activations:   {self.total_activations:,} "
                   f"({_bytes(self.total_activation_bytes)} per image, forward pass)")
        out.append(f"total multiply-adds: {self.total_mult_adds:,} (per image, forward pass)")
        return out

    def __str__(self):
        return "\n".join(self.lines())

    __repr__ = __str__

    def as_dicts(self):
        """The rows as plain dicts (for printing with other tools or saving as JSON)."""
        return [dict(vars(r)) for r in self.rows]


# --------------------------------------------------------------------------- formatting helpers
def _bytes(n):
    if n < 1024:
        return f"{n} B"
    if n < 1024 ** 2:
        return f"{n / 1024:.1f} KiB"
    if n < 1024 ** 3:
        return f"{n / 1024 ** 2:.1f} MiB"
    return f"{n / 1024 ** 3:.2f} GiB"


def _volume(shape):
    """Batch-included shape -> the notes' notation: (1, 96, 55, 55) -> [55x55x96], (1, 4096) -> [4096]."""
    per = tuple(int(s) for s in shape[1:])
    if len(per) == 3:
        per = (per[1], per[2], per[0])
    elif len(per) == 0:
        per = (1,)
    return "[" + "x".join(str(s) for s in per) + "]"


def _label(module, name, counts):
    """The notes' label: from the module's own name, or from its kind and a running count.

    The kind's stem is the layer's ``summary_label`` (``"MAX POOL"``); a name that
    starts with the stem's last word gets the rest in front (``pool1`` -> ``MAX POOL1``).
    """
    stem = module.summary_label or type(module).__name__.upper()
    counts[stem] = counts.get(stem, 0) + 1
    last = name.rpartition(".")[2]
    if last and not last.isdigit():
        label = last.upper()
        qualifier, _, noun = stem.rpartition(" ")
        if qualifier and label.startswith(noun) and not label.startswith(stem):
            label = f"{qualifier} {label}"
        return label
    return f"{stem}{counts[stem]}"


def _generic_params(module, seen):
    """Parameters owned directly by ``module`` and not counted before: (count, formula)."""
    parts, total = [], 0
    for parameter in module._parameters.values():
        if parameter is None or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        shape = tuple(int(s) for s in parameter.shape)
        parts.append("*".join(str(s) for s in shape) or "1")
        total += int(np.prod(shape))
    if not parts:
        return 0, ""
    return total, "+".join(parts) + f" = {total:,}"


def _first_tensor(value):
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


#: how the model's own ops (outside its layers) appear in the table
_OP_LABELS = {"Add": ("ADD", "elementwise sum"), "Concat": ("CONCAT", "channel concatenation")}


def _op_row(function, inputs, out, counts):
    """A row for an op of the model's own forward: its output is an activation like a layer's."""
    stem, text = _OP_LABELS.get(function.name, (function.name.upper(), function.name))
    counts[stem] = counts.get(stem, 0) + 1
    shapes = " + ".join(_volume(x.shape) for x in inputs)
    activations = int(np.prod(out.shape[1:]))
    return SummaryRow(name="", label=f"{stem}{counts[stem]}", kind=function.name, output_shape=tuple(out.shape[1:]),
                      volume=_volume(out.shape), description=f"{text} of {shapes}" if shapes else text,
                      activations=activations, activation_bytes=activations * out.dtype.itemsize,
                      input_shape=tuple(inputs[0].shape[1:]) if inputs else ())


# --------------------------------------------------------------------------- the entry point
def summary(model, input_shape, dtype=None, device=None):
    """Layer-by-layer table of ``model`` for one input of ``input_shape``; returns a :class:`Summary`.

    ``input_shape`` is the shape of one sample *without* the batch axis, e.g.
    ``(3, 227, 227)`` for AlexNet or ``(2,)`` for an MLP on 2-D points.  The
    model runs once on a batch of one zero sample of ``dtype`` on ``device``
    (default: the dtype and device of the model's parameters; float32 on the
    CPU for a model without any).  ``print(summary(...))``
    gives the table; ``.rows``, ``.total_params``, ``.total_mult_adds``,
    ``.total_activations`` and ``.total_activation_bytes`` give the numbers.
    """
    from .nn import Module

    if not isinstance(model, Module):
        raise TypeError(f"summary: expected a tinynet nn.Module, got {type(model).__name__}")
    input_shape = tuple(int(s) for s in (input_shape if isinstance(input_shape, (tuple, list))
                                         else (input_shape,)))
    first = next(iter(model.parameters()), None)
    if dtype is None:
        dtype = first.dtype if first is not None else np.float32
    dtype = np.dtype(dtype)
    if device is None:
        device = first.device if first is not None else "cpu"

    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name)
    hooked = [module for _, module in model.named_modules()
              if not module._modules or any(p is not None for p in module._parameters.values())]
    calls = []
    handles = []
    depth = [0]          # how many hooked layers are running: ops at depth 0 are the model's own

    def enter(mod, inputs):
        depth[0] += 1

    def leave(mod, inputs, output):
        depth[0] -= 1
        calls.append((mod, _first_tensor(inputs), _first_tensor(output)))

    for module in {id(m): m for m in hooked}.values():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))

    def record_op(function, raw_inputs, outputs):
        """An op outside every layer (a residual addition, a concatenation) makes activations too;
        a view (reshape, flatten) shares its input's memory and makes none."""
        if depth[0] or not outputs or outputs[0].dtype.kind != "f":
            return
        arrays = [x for x in raw_inputs if hasattr(x, "shape") and hasattr(x, "dtype")]
        xp = backend.get_array_module(outputs[0].data)
        if any(xp.may_share_memory(outputs[0].data, x) for x in arrays):
            return
        calls.append((function, arrays, outputs[0]))

    modes = [(module, module.training) for module in model.modules()]
    x = Tensor(backend.to_device(np.zeros((1,) + input_shape, dtype=dtype), device))
    try:
        model.eval()
        with no_grad(), recording_ops(record_op):
            try:
                final = model(x)
            except Exception as error:
                message = (f"summary: the forward pass of {type(model).__name__} on a dummy input of "
                           f"shape {(1,) + input_shape} and dtype {dtype.name} failed (input_shape is "
                           f"one sample, without the batch axis): {error}")
                try:
                    wrapped = type(error)(message)
                except Exception:
                    wrapped = RuntimeError(message)
                raise wrapped from error
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            object.__setattr__(module, "training", mode)

    final_tensor = _first_tensor(final)
    rows = [SummaryRow(name="", label="INPUT", kind="Input", output_shape=input_shape,
                       volume=_volume((1,) + input_shape), description="",
                       activations=int(np.prod(input_shape)),
                       activation_bytes=int(np.prod(input_shape)) * dtype.itemsize,
                       input_shape=input_shape)]
    counts, seen = {}, set()
    for module, inp, out in calls:
        if not isinstance(module, Module):        # an op of the model's own forward
            rows.append(_op_row(module, inp, out, counts))
            continue
        kind = type(module).__name__
        name = names.get(id(module), "")
        in_shape = tuple(inp.shape) if inp is not None else ()
        out_shape = tuple(out.shape) if out is not None else ()
        label = _label(module, name, counts)
        is_output = out is not None and (out is final_tensor)
        described = module.describe(in_shape, out_shape, is_model_output=is_output)
        owns = any(p is not None for p in module._parameters.values())
        count, generic_text = _generic_params(module, seen)
        if owns and not count:
            params_text = "shared: counted above"
        else:
            params_text = (described.params_formula or generic_text) if count else ""
        activations = int(np.prod(out_shape[1:])) if out is not None else 0
        rows.append(SummaryRow(
            name=name, label=label, kind=kind, output_shape=out_shape[1:],
            volume=_volume(out_shape) if out is not None else "[?]", description=described.text,
            size_formula=described.size_formula, params=count, params_formula=params_text,
            activations=activations, activation_bytes=activations * (out.dtype.itemsize if out is not None else 0),
            mult_adds=int(described.mult_adds), mult_adds_formula=described.mult_adds_formula,
            input_shape=in_shape[1:]))
    total = model.num_parameters()
    counted = sum(r.params for r in rows)
    return Summary(type(model).__name__, input_shape, rows, total, max(total - counted, 0), dtype)

