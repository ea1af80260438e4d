"""Weight initialisers (PyTorch's ``torch.nn.init`` names), drawing from tinynet's seeded generator.

The draws are made on the CPU generator and then moved to the tensor's device,
so a model initialised after ``tinynet.manual_seed(n)`` starts from the same
numbers on the CPU and on the GPU.

    normal_       w ~ N(mean, std^2)          AlexNet paper: N(0, 0.01^2)
    xavier_*      Var(w) = 2 / (fan_in + fan_out)      (Glorot & Bengio, 2010)
    kaiming_*     Var(w) = gain^2 / fan                (He et al., 2015; gain^2 = 2 for ReLU)

fan_in of a conv weight (O, C, kh, kw) is C*kh*kw; fan_out is O*kh*kw.

Linear and Conv2d start from PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), but most
networks overwrite it at once with their own scheme (AlexNet: N(0, 0.01^2); ResNet and VGG:
He-normal), and drawing numbers that are thrown away took about half of building AlexNet (58M
weights drawn twice).  So the layers' parameters are :class:`DeferredDefaultParameter` objects: the
default draw is made only when some code first reads the parameter's values (``.data``, not its
shape or dtype) without an initialiser of this module having overwritten it first.  At that moment every
default still pending is drawn, in the order the parameters were created -- the same numbers, in
the same order, as drawing each at construction, minus the draws that were overwritten unread.
A model that overwrites some layers thus gets values (not distributions) different from drawing
every default eagerly; a model that keeps all defaults gets exactly the eager numbers.
"""
import collections
import math
import os
import threading
import weakref

import numpy as np

from .. import backend
from .parameter import Parameter

# parameters whose default draw is pending, oldest first (weak: a dropped model leaves nothing behind)
_pending_defaults = collections.deque()
_pending_lock = threading.RLock()


class DeferredDefaultParameter(Parameter):
    """A Parameter whose default initialisation U(-bound, bound) is drawn when its values are first needed.

    Until then ``data`` holds zeros of the right shape and dtype (``np.zeros`` maps pages lazily:
    no memory is touched).  Assigning ``data`` (what every initialiser here and
    ``load_state_dict`` do) cancels the pending draw.
    """

    def __init__(self, *shape):
        self._default_bound = None
        super().__init__(np.zeros(shape, dtype=np.float32))

    def defer_default_uniform(self, bound):
        with _pending_lock:
            self._default_bound = float(bound)
            _pending_defaults.append(weakref.ref(self))
            if len(_pending_defaults) > 4096:     # drop entries overwritten or gone since
                live = [ref for ref in _pending_defaults
                        if ref() is not None and ref()._default_bound is not None]
                _pending_defaults.clear()
                _pending_defaults.extend(live)

    @property
    def data(self):
        if self._default_bound is not None:
            draw_pending_defaults()
            if self._default_bound is not None:   # a copy (copy.deepcopy) that was never queued
                self._draw_default()
        return self._data

    @data.setter
    def data(self, value):
        self._default_bound = None
        self._data = value

    # shape, dtype, ndim and device are the placeholder's: asking for them draws nothing
    @property
    def shape(self):
        return tuple(self._data.shape)

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def device(self):
        return backend.device_of(self._data)

    def _draw_default(self):
        bound, self._default_bound = self._default_bound, None
        uniform_(self, -bound, bound)


def draw_pending_defaults():
    """Draw every pending default initialisation, in creation order."""
    with _pending_lock:
        while _pending_defaults:
            parameter = _pending_defaults.popleft()()
            if parameter is not None and parameter._default_bound is not None:
                parameter._draw_default()


def _fill(tensor, values):
    tensor.data = backend.to_device(values.astype(tensor.dtype, copy=False), tensor.device)
    return tensor


def _fans(shape):
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _draw_dtype(tensor):
    # draw in the tensor's own precision: float64 draws for a 37M-weight float32 layer waste time
    return tensor.dtype if tensor.dtype in (np.float32, np.float64) else np.float64


# Draws of more than _PARALLEL_DRAW_VALUES values are made in chunks of _DRAW_CHUNK values, each from its own
# generator seeded by one draw of tinynet's generator, on all cores: one NumPy draw uses one core, and
# AlexNet's fc6 (37.7M normals) alone took 0.6 s of CPU here.  The chunking depends only on the size,
# so the numbers are the same whatever the number of cores, and the seeds come from tinynet's seeded
# generator (a checkpoint's generator state still replays them).
_PARALLEL_DRAW_VALUES = 1 << 22
_DRAW_CHUNK = 1 << 20


def _draw(kind, shape, dtype):
    """``kind`` ("uniform" or "normal") values of ``shape`` from tinynet's CPU generator, as a fresh array."""
    generator = backend.generator("cpu")
    count = int(np.prod(shape, dtype=np.int64))
    if count <= _PARALLEL_DRAW_VALUES:
        return getattr(generator, kind)(shape, dtype=dtype)
    import concurrent.futures
    chunks = (count + _DRAW_CHUNK - 1) // _DRAW_CHUNK
    seeds = generator.integers(0, np.iinfo(np.int64).max, (chunks,))
    flat = np.empty(count, dtype=dtype)

    def fill(index):
        part = flat[index * _DRAW_CHUNK:(index + 1) * _DRAW_CHUNK]
        chunk_generator = np.random.default_rng(int(seeds[index]))
        if kind == "uniform":
            chunk_generator.random(out=part, dtype=dtype)
        else:
            chunk_generator.standard_normal(out=part, dtype=dtype)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # NumPy releases the GIL while it fills an array, so threads draw in parallel
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(cores, 8))) as pool:
        list(pool.map(fill, range(chunks)))
    return flat.reshape(shape)


# The draws are scaled in place: ``mean + std * values`` made two fresh temporaries, and page-faulting
# them took as long as the draw itself for fc6's 37M weights.  Same operations, same dtype: the same bits.
def uniform_(tensor, a=0.0, b=1.0):
    values = _draw("uniform", tensor.shape, _draw_dtype(tensor))
    values *= (b - a)
    values += a
    return _fill(tensor, values)


def normal_(tensor, mean=0.0, std=1.0):
    values = _draw("normal", tensor.shape, _draw_dtype(tensor))
    values *= std
    values += mean
    return _fill(tensor, values)


def constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value, dtype=np.float64))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    fan_in, fan_out = _fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    fan_in, fan_out = _fans(tensor.shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan_in, fan_out = _fans(tensor.shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="relu"):
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="relu"):
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def default_layer_init_(weight, bias):
    """PyTorch's default for Linear and Conv2d: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    (kaiming_uniform_ with a = sqrt(5): gain^2 = 2 / (1 + 5), bound = sqrt(3) gain / sqrt(fan_in).)
    On :class:`DeferredDefaultParameter` objects the draws are deferred (module docstring).
    """
    deferred = isinstance(weight, DeferredDefaultParameter) and \
        (bias is None or isinstance(bias, DeferredDefaultParameter))
    if not deferred:
        kaiming_uniform_(weight, a=math.sqrt(5), nonlinearity="leaky_relu")
        if bias is not None:
            fan_in, _ = _fans(weight.shape)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            uniform_(bias, -bound, bound)
        return
    # both bounds before deferring: reading a deferred weight's shape would draw it
    weight_bound = math.sqrt(3.0) * _kaiming_std(weight, math.sqrt(5), "fan_in", "leaky_relu")
    fan_in, _ = _fans(weight.shape)
    weight.defer_default_uniform(weight_bound)
    if bias is not None:
        bias.defer_default_uniform(1 / math.sqrt(fan_in) if fan_in > 0 else 0)
