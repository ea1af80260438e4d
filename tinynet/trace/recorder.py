"""Record what every layer of a model computes in one forward and one backward pass.

``trace(model, x)`` runs ``model`` on ``x`` with a forward hook on each leaf layer (a module
with no children, or one that owns parameters directly: the rows of ``tinynet.summary``), then
the backward pass of the cross-entropy loss of one class, and returns a :class:`Trace` whose
records hold, per layer call:

* ``input`` and ``output`` -- copies of the arrays the layer received and produced;
* ``grad_output`` and ``grad_input`` -- d(loss)/d(output) and d(loss)/d(input), caught by a
  post-accumulate hook on those tensors (``Tensor.register_post_accumulate_grad_hook``), which
  sees every contribution of a tensor used several times;
* ``weight_grads`` -- d(loss)/d(parameter) for the layer's own parameters;
* ``row`` -- the layer's ``tinynet.summary`` row (label, ``describe()``'s text, the size and
  parameter arithmetic, multiply-adds);
* ``geometry`` -- which input pixels each output position sees (its receptive field).

No layer is changed: hooks are added and removed, the modes (train/eval) and the parameters'
``requires_grad`` and ``.grad`` are restored afterwards.

Memory
------
``layers=`` keeps only the named layers (dotted names such as ``"features.conv1"`` or summary
labels such as ``"CONV1"``), ``channels=k`` keeps only the first k channels (axis 1) of every
array of rank 3 or more, and the first k rows of weight gradients.  The full gradient of a kept
tensor never lives beyond one backward step: the hook adds the kept slice to the record and
drops ``.grad`` at once.  Parameters of layers that are not kept get ``requires_grad=False``
for the pass, so their (large, for fully connected layers) gradients are never computed.
"""
from dataclasses import dataclass, field
import math

import numpy as np

from .. import backend
from ..function import enable_grad, recording_ops
from ..summary import _first_tensor   # a layer's first tensor among its inputs or outputs, as summary reads it
from ..tensor import Tensor

__all__ = ["trace", "Trace", "LayerRecord", "Geometry"]


# --------------------------------------------------------------------------- receptive fields
@dataclass(frozen=True)
class Axis:
    """Along one spatial axis: output index i sees input pixels [jump*i + start, jump*i + start + width - 1]."""

    jump: float = 1
    start: float = 0
    width: float = 1

    def window(self, kernel, stride, padding, dilation=1):
        """The axis after a sliding window: output i reads input indices [i*s - p, i*s - p + d*(k-1)]."""
        return Axis(self.jump * stride, self.start - self.jump * padding,
                    self.jump * dilation * (kernel - 1) + self.width)

    def span(self, index):
        low = self.jump * index + self.start
        return math.floor(low), math.ceil(low + self.width - 1)


@dataclass(frozen=True)
class Geometry:
    """The receptive field of every output position of a layer, in the model input's pixels."""

    rows: Axis
    cols: Axis
    height: int          #: the model input's height and width (for clipping)
    width: int

    def field(self, y, x, clip=True):
        """(top, left, bottom, right), inclusive, of the input pixels output position (y, x) sees."""
        top, bottom = self.rows.span(y)
        left, right = self.cols.span(x)
        if clip:
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, self.height - 1), min(right, self.width - 1)
        return int(top), int(left), int(bottom), int(right)

    def size(self):
        """The field's unclipped height and width in pixels."""
        return int(round(self.rows.width)), int(round(self.cols.width))


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _next_geometry(module, geometry, in_shape, out_shape):
    """The geometry of a layer's output from its input's; None where a unit sees the whole input."""
    if geometry is None or len(out_shape) != 4 or len(in_shape) != 4:
        return None
    if hasattr(module, "kernel_size") and hasattr(module, "stride"):
        kernel, stride = _pair(module.kernel_size), _pair(module.stride)
        padding = _pair(getattr(module, "padding", 0))
        dilation = _pair(getattr(module, "dilation", 1))
        return Geometry(geometry.rows.window(kernel[0], stride[0], padding[0], dilation[0]),
                        geometry.cols.window(kernel[1], stride[1], padding[1], dilation[1]),
                        geometry.height, geometry.width)
    if tuple(in_shape[2:]) == tuple(out_shape[2:]):      # pointwise in space: ReLU, LRN, batch norm
        return geometry
    if hasattr(module, "output_size"):
        # adaptive pooling: bin i covers floor(i*in/out) .. ceil((i+1)*in/out)-1, a window of at most
        # ceil(in/out)+1 inputs every in/out inputs (an upper bound where in/out is not whole)
        axes = []
        for axis, n_in, n_out in ((geometry.rows, in_shape[2], out_shape[2]), (geometry.cols, in_shape[3], out_shape[3])):
            exact = n_in % n_out == 0
            kernel = n_in // n_out if exact else math.ceil(n_in / n_out) + 1
            axes.append(axis.window(kernel, n_in / n_out, 0))
        return Geometry(axes[0], axes[1], geometry.height, geometry.width)
    return None


# --------------------------------------------------------------------------- records
@dataclass
class LayerRecord:
    """One call of one layer in the traced pass (arrays are NumPy copies, possibly sliced)."""

    index: int                    #: position in the call order (0 = first layer called)
    name: str                     #: dotted name in the model ("features.conv1")
    label: str                    #: summary label ("CONV1")
    kind: str                     #: class name ("Conv2d")
    module: object                #: the layer itself (its parameters hold the weights)
    row: object                   #: its tinynet.summary row (SummaryRow)
    input_shape: tuple            #: full shapes, batch included, before any channel selection
    output_shape: tuple
    input: np.ndarray = None
    output: np.ndarray = None
    grad_output: np.ndarray = None
    grad_input: np.ndarray = None
    weight_grads: dict = field(default_factory=dict)   #: parameter name -> d(loss)/d(parameter)
    geometry: Geometry = None     #: receptive fields of the output positions (None: the whole input)
    channels: int = None          #: how many channels were kept (None: all)
    training: bool = False        #: the layer's mode during the pass (batch norm's statistics depend on it)

    def receptive_field(self, y, x, clip=True):
        """(top, left, bottom, right) of the input pixels that output position (y, x) depends on."""
        if self.geometry is None:
            return None
        return self.geometry.field(y, x, clip)

    def statistics(self):
        """Mean, standard deviation, share of zeros, min and max of the (kept) output."""
        out = np.asarray(self.output, dtype=np.float64)
        return {"mean": float(out.mean()), "std": float(out.std()), "zeros": float(np.mean(out == 0)),
                "min": float(out.min()), "max": float(out.max())}

    def grad_norm(self):
        return None if self.grad_output is None else float(np.linalg.norm(self.grad_output.astype(np.float64)))


class Trace:
    """What :func:`trace` recorded: the layers in call order, the input, the logits and the loss."""

    def __init__(self, model, records, summary, x, input_grad, logits, target, loss):
        self.model, self.records, self.summary = model, records, summary
        self.input, self.input_grad, self.logits = x, input_grad, logits
        self.target, self.loss = target, loss

    @property
    def probabilities(self):
        z = self.logits.astype(np.float64)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)

    def __iter__(self):
        return iter(self.records)

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        """A record by position, dotted name or summary label (the first call of that layer)."""
        if isinstance(key, int):
            return self.records[key]
        for record in self.records:
            if key in (record.name, record.label):
                return record
        raise KeyError(f"trace: no layer named or labelled {key!r}; layers: {[r.label for r in self.records]}")

    def nbytes(self):
        """Bytes held by the recorded arrays."""
        total = 0
        for r in self.records:
            for a in (r.input, r.output, r.grad_output, r.grad_input, *r.weight_grads.values()):
                total += 0 if a is None else a.nbytes
        return total + (0 if self.input_grad is None else self.input_grad.nbytes)

    def saliency(self, index=0):
        """|d loss / d input| of sample ``index``, its largest value over the colour channels: (H, W)."""
        if self.input_grad is None:
            raise ValueError("trace: the input's gradient was not kept (input_grad=False)")
        return np.abs(self.input_grad[index]).max(axis=0)


# --------------------------------------------------------------------------- the pass
def _keep(array, channels):
    """A NumPy copy of ``array``, its axis 1 cut to the first ``channels`` when it has rank >= 3."""
    array = backend.to_numpy(array)
    if channels is not None and array.ndim >= 3:
        array = array[:, :channels]
    return np.array(array, copy=True)


def _hooked_layers(model):
    # the same rule as tinynet.summary, so that calls and summary rows pair one to one
    return list({id(m): m for _, m in model.named_modules()
                 if not m._modules or any(p is not None for p in m._parameters.values())}.values())


def trace(model, x, target=None, layers=None, channels=None, weight_grads=True, input_grad=True,
          train=False):
    """Run ``model`` forward and backward on ``x`` and record every (or every chosen) layer.

    ``x``: a Tensor or array of a batch (N, ...).  ``target``: the class whose cross-entropy
    loss is differentiated (an int, or one per sample); None takes each sample's predicted
    class, so the gradients say what supports the network's own answer.  ``layers``: names
    or summary labels to keep (None: all).  ``channels``: keep the first k channels only.
    ``train``: trace in training mode (dropout draws, batch statistics) instead of evaluation
    mode; the running statistics are restored afterwards.
    Returns a :class:`Trace`.
    """
    from ..nn import Module
    from ..nn import functional as F
    from ..summary import summary

    if not isinstance(model, Module):
        raise TypeError(f"trace: expected a tinynet nn.Module, got {type(model).__name__}")
    if channels is not None and (int(channels) != channels or channels < 1):
        raise ValueError(f"trace: channels must be a positive int or None, got {channels!r}")
    first = next(iter(model.parameters()), None)
    data = x.data if isinstance(x, Tensor) else np.asarray(x, dtype=first.dtype if first is not None else np.float32)
    if first is not None:
        data = backend.to_device(data, first.device)
    table = summary(model, tuple(data.shape[1:]), dtype=data.dtype)
    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name)
    wanted = None if layers is None else {str(n).upper() for n in layers}

    hooked = _hooked_layers(model)
    # summary's rows of layer calls, in call order: every layer has a dotted name but the model
    # itself (hooked when it owns parameters); rows of the model's own ops (ADD, CONCAT) have none
    root_hooked = any(m is model for m in hooked)
    layer_rows = [r for r in table.rows[1:] if r.name or (root_hooked and r.kind == type(model).__name__)]
    records, calls, watched = [], [0], {}
    geometry = {}          # id(array) -> (Geometry or None, array): the receptive fields of live arrays
    height, width = (int(data.shape[2]), int(data.shape[3])) if data.ndim == 4 else (0, 0)
    depth = [0]
    inp_holder = [None]     # the model's input tensor: its gradient is the saliency map

    def watch(tensor, record, slot):
        """Catch d(loss)/d(tensor) for ``record.slot`` with a tensor hook (kept slice only)."""
        if tensor is None or not tensor.requires_grad:
            return
        entry = watched.get(id(tensor))
        if entry is None:
            def hook(t, key=id(tensor)):
                part = _keep(t.grad.data, channels)
                # the model's input keeps its .grad (the saliency map), so it holds the running total;
                # any other tensor's .grad is dropped at once, and the record adds up the contributions
                total = t is inp_holder[0]
                for rec, name in watched[key][1]:
                    previous = getattr(rec, name)
                    setattr(rec, name, part if previous is None or total else previous + part)
                if not total:
                    t.grad = None
            tensor.retain_grad()
            handle = tensor.register_post_accumulate_grad_hook(hook)
            entry = watched[id(tensor)] = (tensor, [], handle)
        entry[1].append((record, slot))

    def enter(module, inputs):
        depth[0] += 1

    def leave(module, inputs, output):
        depth[0] -= 1
        index = calls[0]
        calls[0] += 1
        inp, out = _first_tensor(inputs), _first_tensor(output)
        row = layer_rows[index] if index < len(layer_rows) else None
        name = names.get(id(module), "")
        label = row.label if row is not None else name.upper()
        in_shape = tuple(inp.shape) if inp is not None else ()
        out_shape = tuple(out.shape) if out is not None else ()
        before = geometry.get(id(inp.data), (None,))[0] if inp is not None else None
        after = _next_geometry(module, before, in_shape, out_shape)
        if out is not None:
            geometry[id(out.data)] = (after, out.data)
        if wanted is not None and name.upper() not in wanted and label.upper() not in wanted:
            return
        record = LayerRecord(index=len(records), name=name, label=label, kind=type(module).__name__,
                             module=module, row=row, input_shape=in_shape, output_shape=out_shape,
                             input=_keep(inp.data, channels) if inp is not None else None,
                             output=_keep(out.data, channels) if out is not None else None,
                             geometry=after, channels=channels, training=module.training)
        records.append(record)
        watch(out, record, "grad_output")
        watch(inp, record, "grad_input")

    def record_op(function, raw_inputs, outputs):
        # an op of the model's own forward (a residual sum, a flatten): its output sees what its
        # widest input sees, or the whole input once it is no longer an image
        if depth[0] or not outputs:
            return
        known = [geometry[id(a)][0] for a in raw_inputs if id(a) in geometry and geometry[id(a)][0] is not None]
        out = outputs[0]
        g = max(known, key=lambda g: g.rows.width) if known and out.ndim == 4 else None
        geometry[id(out.data)] = (g, out.data)

    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    # in training mode batch norm updates its running statistics: a trace leaves them as they were
    buffers = [(m, name, array.copy()) for m in model.modules() for name, array in m._buffers.items()
               if array is not None] if train else []
    handles = []
    for module in hooked:
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        model.train(train)
        if wanted is not None or not weight_grads:
            # parameters of layers that are not kept need no gradient: their backward is skipped
            kept = {id(m) for name, m in model.named_modules() if weight_grads and (
                name.upper() in wanted or any(r.name == name and r.label.upper() in wanted for r in layer_rows))}
            for module in model.modules():
                for p in module._parameters.values():
                    if p is not None and id(module) not in kept:
                        p.requires_grad = False
        for p in model.parameters():
            p.grad = None
        inp = Tensor(data, requires_grad=input_grad)
        inp_holder[0] = inp
        if data.ndim == 4:
            geometry[id(inp.data)] = (Geometry(Axis(), Axis(), height, width), inp.data)
        with enable_grad(), recording_ops(record_op):
            logits = _first_tensor(model(inp))
        n = logits.shape[0]
        if target is None:
            labels = backend.to_numpy(logits.data).argmax(axis=-1)
        else:
            labels = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,)).copy()
        loss = F.cross_entropy(logits, Tensor(backend.to_device(labels, logits.device)))
        if loss.requires_grad:
            loss.backward()
        for record in records:
            module = record.module
            for pname, p in module._parameters.items():
                if p is not None and p.grad is not None and p.requires_grad:
                    record.weight_grads[pname] = _keep_rows(p.grad.data, channels)
        grad_x = _keep(inp.grad.data, None) if input_grad and inp.grad is not None else None
        result = Trace(model, records, table, backend.to_numpy(data).copy(), grad_x,
                       backend.to_numpy(logits.data).copy(), labels, float(loss.item()))
    finally:
        for handle in handles:
            handle.remove()
        for tensor, _, handle in watched.values():
            handle.remove()
        watched.clear()
        geometry.clear()
        for module, mode in modes:
            object.__setattr__(module, "training", mode)
        for p, requires, grad in saved:
            p.requires_grad, p.grad = requires, grad
        for module, name, array in buffers:
            module._buffers[name][...] = array
    return result


def _keep_rows(array, channels):
    array = backend.to_numpy(array)
    if channels is not None and array.ndim >= 2:
        array = array[:channels]
    return np.array(array, copy=True)
