"""Tensor: an array (NumPy or CuPy) that remembers how it was made, and the backward walk.

``Tensor.backward`` computes d(self)/d(leaf) for every leaf tensor that
requires a gradient, by the chain rule applied node by node in *reverse
topological order*: a Function's backward runs only after every consumer of
its outputs has sent back its share of the gradient, so each output's gradient
is complete (summed over all its uses) before it flows further.

The order is found with an explicit stack instead of recursion, so a graph as
deep as a 150-layer ResNet (thousands of nodes) never meets Python's recursion
limit.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .function import Function
from .ops.activation import Exp, Log, LogSoftmax, Sigmoid, Softmax, Sqrt, Tanh, relu
from .ops.arithmetic import Add, Cast, Div, MatMul, Mul, Neg, Pow, Sub, add_arrays
from .ops.reduction import Max, Mean, Sum
from .ops.shape import GetItem, Reshape, Transpose


def _as_array(data, dtype=None, device=None):
    """Turn ``data`` (array, Tensor, list, scalar) into an array, float32 by default for floats."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.generic):  # a NumPy scalar (what 0-d array arithmetic returns) keeps its dtype
        data = np.asarray(data)
    if backend.is_gpu_array(data) or isinstance(data, np.ndarray):
        array = data if dtype is None else data.astype(dtype, copy=False)
    else:
        array = np.asarray(data, dtype=dtype)
        if dtype is None and array.dtype == np.float64:
            array = array.astype(np.float32)  # Python floats become float32, as in PyTorch
    if device is not None:
        array = backend.to_device(array, device)
    return array


class _HookHandle:
    """What registering a hook returns (here and in ``nn.Module``): ``remove()`` unregisters it."""

    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


class Tensor:
    """An n-dimensional array with an optional gradient.

    ``Tensor(data, requires_grad=False)``: ``data`` is a NumPy or CuPy array
    (kept as it is, its dtype included), or a list/scalar (floats become
    float32, ints int64).
    """

    # NumPy arrays and scalars defer to Tensor's operators (np_array * tensor -> Tensor)
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        self.data = _as_array(data, dtype, device)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}; "
                f"convert first, e.g. tinynet.tensor(data, dtype='float32', requires_grad=True)")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.creator = None       # the Function that produced this tensor, if recorded
        self.output_index = 0     # which of the creator's outputs this is
        self.retains_grad = False
        self.name = None

    # ------------------------------------------------------------- array facts
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return self.shape[0]

    def numpy(self):
        """The values as a NumPy array (copied from the GPU if needed; shares memory on the CPU)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with exactly one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.creator is not None:
            extra = f", creator={type(self.creator).__name__}"
        device = "" if self.device == "cpu" else f", device='{self.device}'"
        return f"tensor({np.array2string(self.numpy(), precision=4, separator=', ')}{device}{extra})"

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with shape {self.shape} is ambiguous")
        return bool(self.item())

    def __hash__(self):
        return id(self)

    # ------------------------------------------------------------- devices and copies
    def to(self, device=None, dtype=None):
        """A tensor on ``device`` (``'cpu'``/``'gpu'``) and/or of ``dtype``; ``self`` if nothing changes.

        The result is a new leaf: moving between devices is not recorded in the graph.
        """
        data = self.data if device is None else backend.to_device(self.data, device)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        if data is self.data:
            return self
        return Tensor(data, requires_grad=self.requires_grad)

    def cpu(self):
        return self.to("cpu")

    def gpu(self):
        return self.to("gpu")

    cuda = gpu

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def astype(self, dtype):
        return Cast.apply(self, dtype=dtype)

    def detach(self):
        """A new leaf that shares the data but not the history."""
        return Tensor(self.data)

    def clone(self):
        return Tensor(self.data.copy(), requires_grad=self.requires_grad)

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (for inspection while learning)."""
        self.retains_grad = True

    def zero_grad(self, set_to_none=True):
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad = Tensor(backend.get_array_module(self.data).zeros_like(self.data))

    # ------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

        ``grad`` is d(loss)/d(self); it may be left out only when ``self`` holds a
        single element (a loss), where it is 1.  The graph's saved arrays are
        freed afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require a gradient: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())")
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a grad argument works only on a single-element tensor "
                    f"(a loss); this one has shape {self.shape}: pass grad=<array of that shape>")
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad, dtype=self.data.dtype)
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward(): grad has shape {tuple(grad.shape)}, expected {self.shape}")
            grad = backend.to_device(grad, self.device)

        if self.creator is None:  # backward on a leaf: d(self)/d(self) = grad
            self._accumulate(grad)
            return

        order = _topological_order(self.creator)
        pending = {self.creator: [None] * self.creator.output_count}
        pending[self.creator][self.output_index] = grad
        for function in reversed(order):
            # an output that nobody used arrives as None: its gradient is zero
            grad_outputs = pending.pop(function)
            grad_inputs = function.backward(*grad_outputs)
            if not isinstance(grad_inputs, tuple):
                grad_inputs = (grad_inputs,)
            for tensor, needed, g in zip(function.inputs, function.needs_input_grad, grad_inputs):
                if not needed or g is None:
                    continue
                if tuple(g.shape) != tensor.shape:
                    raise RuntimeError(
                        f"{function.name}.backward returned a gradient of shape "
                        f"{tuple(g.shape)} for an input of shape {tensor.shape}")
                if tensor.creator is None:
                    tensor._accumulate(g)
                    continue
                if tensor.retains_grad:
                    tensor._accumulate(g)
                slots = pending.setdefault(tensor.creator, [None] * tensor.creator.output_count)
                index = tensor.output_index
                slots[index] = g if slots[index] is None else add_arrays(slots[index], g)
            if not retain_graph:
                function.release()

    def _accumulate(self, g):
        # Never add in place: a backward may hand the same array to several inputs.
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        if self.grad is None:
            self.grad = Tensor(g)
        else:
            self.grad = Tensor(add_arrays(self.grad.data, g))
        for hook in tuple(self.__dict__.get("_post_accumulate_grad_hooks", {}).values()):
            hook(self)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` each time backward has added a gradient contribution to ``self.grad``.

        A tensor used k times in the graph gets k calls per backward.  Data-parallel training
        (``tinynet.distributed``) counts them to start reducing a bucket of gradients as soon as
        its last contribution is in, while backward still runs.  Returns a handle whose
        ``remove()`` unregisters the hook.
        """
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook expects a callable, got {type(hook).__name__}")
        hooks = self.__dict__.setdefault("_post_accumulate_grad_hooks", {})
        key = object()
        hooks[key] = hook
        return _HookHandle(hooks, key)

    # ------------------------------------------------------------- operators
    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    def __sub__(self, other):
        return Sub.apply(self, other)

    def __rsub__(self, other):
        return Sub.apply(other, self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __truediv__(self, other):
        return Div.apply(self, other)

    def __rtruediv__(self, other):
        return Div.apply(other, self)

    def __neg__(self):
        return Neg.apply(self)

    def __pow__(self, exponent):
        return Pow.apply(self, exponent=exponent)

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return MatMul.apply(other, self)

    def __getitem__(self, index):
        return GetItem.apply(self, index=index)

    # comparisons give plain boolean tensors (no gradient)
    def _compare(self, other, name):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(getattr(self.data, name)(other))

    def __lt__(self, other):
        return self._compare(other, "__lt__")

    def __le__(self, other):
        return self._compare(other, "__le__")

    def __gt__(self, other):
        return self._compare(other, "__gt__")

    def __ge__(self, other):
        return self._compare(other, "__ge__")

    def eq(self, other):
        return self._compare(other, "__eq__")

    # ------------------------------------------------------------- methods mirroring the functions
    def sum(self, axis=None, keepdims=False):
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return Max.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None):
        return Tensor(self.data.argmax(axis=axis))

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        shape = self.shape
        end_dim = end_dim % len(shape) if shape else 0
        middle = int(np.prod(shape[start_dim:end_dim + 1], dtype=np.int64))
        return self.reshape(shape[:start_dim] + (middle,) + shape[end_dim + 1:])

    def permute(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose.apply(self, axes=axes)

    def transpose(self, dim0=None, dim1=None):
        if dim0 is None:
            return self.permute(tuple(reversed(range(self.ndim))))
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(axes)

    @property
    def T(self):
        return self.transpose()

    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def sqrt(self):
        return Sqrt.apply(self)

    def relu(self):
        return relu(self)

    def sigmoid(self):
        return Sigmoid.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def softmax(self, axis=-1):
        return Softmax.apply(self, axis=axis)

    def log_softmax(self, axis=-1):
        return LogSoftmax.apply(self, axis=axis)


def _topological_order(root: Function):
    """Functions reachable from ``root``, each listed after every Function that feeds it.

    Iterative depth-first search: a node is appended once all its inputs'
    creators have been appended (post-order), so reversing the list gives an
    order in which every consumer comes before its producers.
    """
    order, visited = [], {root}
    stack = [(root, iter(_creators_of(root)))]
    while stack:
        function, producers = stack[-1]
        for producer in producers:
            if producer not in visited:
                visited.add(producer)
                stack.append((producer, iter(_creators_of(producer))))
                break
        else:
            stack.pop()
            order.append(function)
    return order


def _creators_of(function: Function):
    if function.released:
        raise RuntimeError(
            "trying to backward through the graph a second time: its saved arrays were freed "
            "by the first backward(); pass retain_graph=True to the first call if you need a second")
    return [x.creator for x in function.inputs
            if x is not None and x.creator is not None and x.requires_grad]


def tensor(data, requires_grad=False, dtype=None, device=None):
    """Make a Tensor from an array, list or scalar (PyTorch's ``torch.tensor``)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)
