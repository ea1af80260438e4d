"""Function: one differentiable operation, a node of the computation graph.

A subclass implements two methods on *raw arrays* (NumPy or CuPy, never Tensors):

    forward(self, *inputs)         -> output array (or a tuple of arrays)
    backward(self, *grad_outputs)  -> one gradient array per input (None where not needed)

``forward`` stores on ``self`` whatever ``backward`` will need (the input, the
output, an argmax...).  Operation parameters that are not tensors -- an axis,
a stride -- are passed to the constructor::

    class Exp(Function):
        def forward(self, x):
            self.y = get_array_module(x).exp(x)
            return self.y
        def backward(self, grad_y):
            return grad_y * self.y            # d/dx exp(x) = exp(x)

    y = Exp.apply(x)                          # x: Tensor -> y: Tensor

When gradients are being recorded and an input requires a gradient, the
outputs remember this Function as their ``creator`` and the Function remembers
its input Tensors: that is the graph that ``Tensor.backward`` walks.
``self.needs_input_grad[i]`` tells ``backward`` which gradients are wanted, so
that it can skip expensive ones (the input gradient of a first convolution).
"""
from __future__ import annotations

import contextlib

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        global _grad_enabled
        self.previous = _grad_enabled
        _grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.previous
        return False


def no_grad():
    """Context manager (and decorator): run without recording the graph (evaluation, updates)."""
    return _GradMode(False)


def enable_grad():
    """Context manager (and decorator): record the graph again inside a ``no_grad`` block."""
    return _GradMode(True)


class Function:
    """Base class of differentiable operations; see the module docstring."""

    #: the input Tensors (only while the graph is alive and gradients are needed)
    inputs: tuple = ()
    needs_input_grad: tuple = ()
    #: set once backward has released the saved arrays
    released = False

    @classmethod
    def apply(cls, *inputs, **parameters):
        """Run ``cls(**parameters)`` on ``inputs`` (Tensors, arrays or Python scalars)."""
        return cls(**parameters)(*inputs)

    def __call__(self, *inputs):
        from .tensor import Tensor

        raw_inputs = [x.data if isinstance(x, Tensor) else x for x in inputs]
        needs_input_grad = tuple(isinstance(x, Tensor) and x.requires_grad for x in inputs)
        record = _grad_enabled and any(needs_input_grad)
        self.needs_input_grad = needs_input_grad
        outputs = self.forward(*raw_inputs)
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)
        tensors = tuple(Tensor(y) for y in outputs)
        if record:
            self.inputs = tuple(inputs)
            self.output_count = len(tensors)
            for index, tensor in enumerate(tensors):
                if tensor.dtype.kind != "f":  # integer outputs (indices, counts) carry no gradient
                    continue
                tensor.requires_grad = True
                tensor.creator = self
                tensor.output_index = index
        else:
            self.release()
        return tensors[0] if single else tensors

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, *grad_outputs):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def release(self):
        """Drop the input references and saved arrays once they are no longer needed."""
        vars(self).clear()
        self.released = True

    def __repr__(self):
        return f"<{type(self).__name__}>"
