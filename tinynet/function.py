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
import threading
import weakref


class _ThreadSwitches(threading.local):
    """Switches that belong to one thread: a data-loader or trainer thread that enters
    ``no_grad`` must not stop the graph being recorded in the main thread.  Every thread
    starts with the defaults below (``threading.local`` runs ``__init__`` per thread)."""

    def __init__(self):
        self.grad_enabled = True
        self.op_recorder = None      # recording_ops: called as recorder(function, raw_inputs, outputs)


_switches = _ThreadSwitches()


@contextlib.contextmanager
def recording_ops(recorder):
    """Call ``recorder(function, raw_inputs, output_tensors)`` after every op this thread runs.

    ``tinynet.summary`` uses it to see what a model computes outside its layers (a residual
    addition, a channel concatenation).  One recorder per thread; the previous one is restored."""
    previous, _switches.op_recorder = _switches.op_recorder, recorder
    try:
        yield
    finally:
        _switches.op_recorder = previous


def is_grad_enabled() -> bool:
    """Whether this thread records the graph (``no_grad`` turns it off for this thread only)."""
    return _switches.grad_enabled


class _GradMode(contextlib.ContextDecorator):
    """Sets this thread's grad mode for the duration of a ``with`` block (or a decorated call)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        # one object may be entered by several threads at once (as a decorator) and
        # re-entered recursively, so the modes to restore are kept per thread, as a stack
        self._saved = threading.local()

    def __enter__(self):
        stack = self._saved.__dict__.setdefault("modes", [])
        stack.append(_switches.grad_enabled)
        _switches.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _switches.grad_enabled = self._saved.modes.pop()
        return False


def no_grad():
    """Context manager (and decorator): run without recording the graph (evaluation, updates)."""
    return _GradMode(False)


def set_grad_enabled(mode: bool):
    """Context manager (and decorator): record the graph or not, as ``mode`` says (this thread only)."""
    return _GradMode(bool(mode))


def enable_grad():
    """Context manager (and decorator): record the graph again inside a ``no_grad`` block."""
    return _GradMode(True)


class GraphEdge:
    """How a node of the graph reaches an input that another node computed: that node and the
    output slot, never the array itself.

    Holding the input *tensor* (as nodes once did) kept every intermediate array alive until
    backward reached its consumer, even where backward does not need it: a convolution's output,
    fed to a ReLU that saves only its own output, stayed in memory for the whole step (167 MB of
    AlexNet's at batch 64).  What backward needs of an input is its producer, its output slot and
    its shape; an array it needs is in what the kernel saved.  A tensor the user still holds is
    reached through a weak reference, so ``retain_grad()`` (even when called after the forward
    pass) still gets its gradient.
    """

    __slots__ = ("creator", "output_index", "shape", "requires_grad", "_tensor")

    def __init__(self, tensor):
        self.creator, self.output_index = tensor.creator, tensor.output_index
        self.shape, self.requires_grad = tensor.shape, tensor.requires_grad
        self._tensor = weakref.ref(tensor)

    @property
    def retains_grad(self):
        tensor = self._tensor()
        return tensor is not None and tensor.retains_grad

    def _accumulate(self, grad):
        tensor = self._tensor()
        if tensor is not None:
            tensor._accumulate(grad)


def _graph_input(x, needs_grad):
    """What a node keeps of one input: nothing (no gradient flows there), the tensor itself (a
    leaf: backward accumulates into its ``.grad``), or a :class:`GraphEdge` (computed by a node)."""
    if not needs_grad:
        return None
    return x if x.creator is None else GraphEdge(x)


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
        record = _switches.grad_enabled and any(needs_input_grad)
        self.needs_input_grad = needs_input_grad
        self.recording = record          # False: no backward will follow, forward may keep nothing
        outputs = self.forward(*raw_inputs)
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)
        tensors = tuple(Tensor(y) for y in outputs)
        if _switches.op_recorder is not None:
            _switches.op_recorder(self, raw_inputs, tensors)
        if record:
            self.inputs = tuple(_graph_input(x, needed) for x, needed in zip(inputs, needs_input_grad))
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

    @property
    def name(self):
        """The op's name in messages (a kernel-backed Function names its kernel)."""
        return type(self).__name__

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
