"""Module: the base class of layers and models.

Assigning a ``Parameter`` or a ``Module`` to an attribute registers it, so
``parameters()`` finds every learnable array of a model by walking its
attributes (as in PyTorch).  ``state_dict()`` names each parameter and buffer
by its dotted attribute path (``features.0.weight``), which is also the key
layout of a PyTorch state dict for the same architecture.
"""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor, _HookHandle
from .parameter import Parameter


class Module:
    """Base class: subclasses set layers/parameters in ``__init__`` and define ``forward``."""

    training = True
    #: the stem of this kind of layer's label in ``tinynet.summary`` ("CONV" -> CONV1, CONV2...);
    #: None: the class name in capitals.  A layer named in its model ("pool1") is labelled by its name.
    summary_label = None

    def describe(self, input_shape, output_shape, is_model_output=False):
        """How ``tinynet.summary`` shows this layer, given the batch-included shapes it saw.

        Returns a :class:`~tinynet.nn.description.LayerDescription` (the notes' description,
        size arithmetic, parameter formula, multiply-adds).  The default says nothing beyond
        the parameter count, which ``summary`` computes itself; layers override it.
        """
        from .description import LayerDescription
        return LayerDescription()

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------- registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() ran: call super().__init__() "
                f"first in {type(self).__name__}.__init__")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            # reassigning a buffer (self.running_mean = new_array) keeps it a buffer, as in PyTorch
            self.register_buffer(name, value)
            return
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name, parameter):
        """Register ``parameter`` (or ``None``, for an absent bias) under ``name``."""
        if parameter is None:
            object.__setattr__(self, name, None)
            self._parameters.pop(name, None)
        else:
            setattr(self, name, parameter)

    def register_buffer(self, name, array):
        """A non-learnable array saved in the state dict (e.g. running statistics).

        ``array`` is a NumPy or CuPy array (a Tensor is unwrapped), or ``None`` for a buffer
        that is absent (kept out of the state dict until an array is assigned).
        """
        if isinstance(array, Tensor):
            array = array.data
        if isinstance(array, np.generic):      # 0-d arithmetic gives a NumPy scalar: keep it an array
            array = np.asarray(array)
        if array is not None and not (isinstance(array, np.ndarray) or backend.is_gpu_array(array)):
            raise TypeError(f"{type(self).__name__}.register_buffer({name!r}): expected a NumPy or CuPy "
                            f"array (or None), got {type(array).__name__}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"{type(self).__name__}: {name!r} is already a parameter or submodule")
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def add_module(self, name, module):
        setattr(self, name, module)

    # ------------------------------------------------------------- traversal
    def named_modules(self, prefix=""):
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            children = list(module._modules.items())
            for child_name, child in reversed(children):
                stack.append((f"{name}.{child_name}" if name else child_name, child))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, parameter in module._parameters.items():
                if id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self):
        for _, parameter in self.named_parameters():
            yield parameter

    def named_buffers(self, prefix=""):
        """(dotted name, array) for every buffer that holds an array (``None`` buffers are absent)."""
        for module_name, module in self.named_modules(prefix):
            for name, array in module._buffers.items():
                if array is not None:
                    yield (f"{module_name}.{name}" if module_name else name), array

    def buffers(self):
        for _, array in self.named_buffers():
            yield array

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------- modes and devices
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Move (and/or cast) every parameter and buffer in place; returns ``self``."""
        for module in self.modules():
            for parameter in module._parameters.values():
                data = parameter.data if device is None else backend.to_device(parameter.data, device)
                if dtype is not None:
                    data = data.astype(dtype)
                parameter.data = data
                if parameter.grad is not None:
                    parameter.grad = parameter.grad.to(device, dtype)
            for name, array in list(module._buffers.items()):
                if array is None:
                    continue
                if device is not None:
                    array = backend.to_device(array, device)
                # only floating-point buffers follow the dtype (a step counter stays an integer)
                if dtype is not None and array.dtype.kind == "f":
                    array = array.astype(dtype)
                module.register_buffer(name, array)
        return self

    def cpu(self):
        return self.to("cpu")

    def gpu(self):
        return self.to("gpu")

    cuda = gpu

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def zero_grad(self, set_to_none=True):
        for parameter in self.parameters():
            parameter.zero_grad(set_to_none)

    # ------------------------------------------------------------- state
    def state_dict(self):
        """Parameters and buffers by dotted name, as the live arrays (copy them to keep a snapshot)."""
        state = OrderedDict((name, p.data) for name, p in self.named_parameters())
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers, checking names and shapes.

        Values may be NumPy/CuPy arrays, Tensors, or anything with ``.numpy()``
        (a PyTorch tensor).  With ``strict`` a missing or unexpected key is an
        error; a shape mismatch always is.  Nothing is changed unless every
        entry checks out.
        """
        own = OrderedDict(self.named_parameters())
        buffers = OrderedDict(self.named_buffers())
        missing = [k for k in list(own) + list(buffers) if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own and k not in buffers]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        staged = {}
        for name, value in state_dict.items():
            if name not in own and name not in buffers:
                continue
            array = _as_array(value)
            # the parameter's shape, not its values: reading .data would draw a deferred default
            expected_shape = own[name].shape if name in own else buffers[name].shape
            if tuple(array.shape) != tuple(expected_shape):
                problems.append(f"{name}: expected shape {tuple(expected_shape)}, got {tuple(array.shape)}")
                continue
            staged[name] = array
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__} failed:\n  " + "\n  ".join(problems))
        modules = dict(self.named_modules())
        for name, array in staged.items():
            if name in own:
                parameter = own[name]
                array = backend.to_device(array, parameter.device).astype(parameter.dtype, copy=True)
                parameter.data = array
            else:
                module_name, _, attribute = name.rpartition(".")
                module = modules[module_name]
                old = module._buffers[attribute]
                module.register_buffer(attribute, backend.to_device(array, backend.device_of(old)).astype(old.dtype))
        return missing, unexpected

    # ------------------------------------------------------------- calling
    def register_forward_hook(self, hook):
        """``hook(module, inputs, output)`` runs after every forward; returns a handle with ``remove()``."""
        key = object()
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    def register_forward_pre_hook(self, hook):
        """``hook(module, inputs)`` runs before every forward; returns a handle with ``remove()``."""
        key = object()
        self._forward_pre_hooks[key] = hook
        return _HookHandle(self._forward_pre_hooks, key)

    def __call__(self, *inputs, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            hook(self, inputs)
        output = self.forward(*inputs, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, inputs, output)
            if result is not None:
                output = result
        return output

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # ------------------------------------------------------------- printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            lines[0] = lines[0]
            for name, module in self._modules.items():
                child = repr(module).replace("\n", "\n  ")
                lines.append(f"  ({name}): {child}")
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"


def _as_array(value):
    if isinstance(value, Tensor):
        return value.data
    if backend.is_gpu_array(value) or isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a PyTorch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)
