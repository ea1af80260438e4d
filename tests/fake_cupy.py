"""A strict stand-in for the CuPy module, for running tinynet's GPU path without a GPU.

Its arrays (``fake_cupy.ndarray``) are *not* NumPy arrays: each one holds a
private NumPy buffer that plays the part of device memory, and they refuse
everything real CuPy refuses, so that a bug which would only show on a GPU
shows here too:

* mixing with NumPy arrays is a ``TypeError`` wherever an array goes: operators
  (``gpu + cpu``, ``cpu + gpu``), every positional and keyword argument of ufuncs,
  module functions and array methods (``xp.add(gpu, cpu)``, ``xp.add(gpu, 1,
  where=cpu_mask)``, ``gpu.clip(cpu_lo, cpu_hi)``, ``gpu.sum(where=cpu_mask)``,
  ``xp.concatenate([gpu, cpu])``), a NumPy ``out=``, as CuPy's kernels raise
  ``Unsupported type <class 'numpy.ndarray'>``.  The exceptions are CuPy's:
  integer *indices* (``gpu[cpu_index]``, ``gpu.take(cpu_index)``,
  ``xp.take(gpu, cpu_index)``), which CuPy copies to the device itself;
* implicit conversion to NumPy (``np.asarray(gpu)``, ``__array__``) raises
  CuPy's "Implicit conversion to a NumPy array is not allowed" -- only
  ``.get()`` and ``asnumpy`` copy to the host;
* ``asarray``/``array`` of host data *copy* it to the "device": writing the
  source afterwards does not change the device array;
* integer indexing returns a 0-d device array, not a host scalar;
* arrays remember the device they were made on (``cuda.Device(i)`` as a
  context), and an operation on arrays of different devices is a
  ``ValueError``, as in CuPy; ``cuda.runtime.getDeviceCount`` answers
  :data:`device_count`, which tests may change;
* the module offers only the functions listed in :data:`FUNCTIONS` (the ones
  tinynet calls, all of which CuPy has), and ufuncs with ``.at`` as CuPy's do.

numba's CUDA simulator only knows NumPy arrays, while the real CUDA target takes
any object with ``__cuda_array_interface__`` (as CuPy's arrays have).
:func:`install_simulator_bridge` teaches the simulator that protocol: a kernel
launched on stand-in arrays runs on a NumPy view of their buffers.  The bridge
also records every launch (kernel and numba argument types) for the PTX tests,
and detects write races: the simulator runs a block's threads one after another
under the GIL, so two threads doing ``out[i] += v`` to the same element without
``cuda.atomic.add`` give the right sum there and a wrong one on a GPU; the bridge
fails such a launch, naming the kernel, the element and the two threads.
"""
import contextlib
import numbers
import threading
import types

import numpy as np

#: how many "GPUs" the stand-in reports (tests of device indices change it)
device_count = 1
_current_device = 0

_HOST_SCALARS = (numbers.Number, np.generic, bool)


def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)}")


# ----------------------------------------------------------------- the device array
class ndarray:
    """An array in "device memory": a private NumPy buffer behind CuPy's rules."""

    __slots__ = ("_host", "_device_id", "__weakref__")
    __array_priority__ = 100  # NumPy defers binary operators to us

    def __init__(self, shape, dtype=float):
        self._host = np.empty(shape, dtype=dtype)
        self._device_id = _current_device

    @classmethod
    def _wrap(cls, host, device_id=None):
        array = object.__new__(cls)
        array._host = host
        array._device_id = _current_device if device_id is None else device_id
        return array

    # -- what CuPy refuses
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # reached from NumPy's side (np_array + gpu_array, np.exp(gpu_array)): CuPy defers to
        # its own ufunc, which rejects host arrays
        if ufunc.__name__ not in UFUNCS or method not in ("__call__", "at"):
            return NotImplemented
        function = getattr(fake_cupy, ufunc.__name__)
        return function(*inputs, **kwargs) if method == "__call__" else function.at(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        # np.concatenate(gpu_arrays) works in CuPy by dispatching to cupy.concatenate
        if func.__name__ not in FUNCTIONS:
            return NotImplemented
        return getattr(fake_cupy, func.__name__)(*args, **kwargs)

    # -- the CUDA array interface (version 3), which numba's real CUDA target reads
    @property
    def __cuda_array_interface__(self):
        interface = dict(self._host.__array_interface__)
        return {"shape": interface["shape"], "typestr": interface["typestr"],
                "data": interface["data"], "strides": interface["strides"], "version": 3}

    # -- copies between host and device
    def get(self):
        """CuPy's device-to-host copy."""
        return self._host.copy()

    def set(self, array):
        """CuPy's host-to-device copy into this array."""
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(array)}")
        if array.shape != self.shape:
            raise ValueError(f"Shape mismatch: {self.shape} vs {array.shape}")
        self._host[...] = array

    # -- attributes
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    strides = property(lambda self: self._host.strides)
    itemsize = property(lambda self: self._host.itemsize)
    nbytes = property(lambda self: self._host.nbytes)
    flags = property(lambda self: _Flags(self._host.flags))
    T = property(lambda self: self._same_device(self._host.T))
    device = property(lambda self: Device(self._device_id))

    def _same_device(self, host):
        return ndarray._wrap(host, self._device_id)

    def __len__(self):
        return len(self._host)

    def __repr__(self):
        return f"fake_cupy.{self._host!r}"

    def __iter__(self):  # CuPy iterates over the first axis, yielding device arrays
        return (self[i] for i in range(len(self)))

    # -- conversions CuPy allows (each synchronises and copies one value)
    def item(self, *args):
        return self._host.item(*args)

    def tolist(self):
        return self._host.tolist()

    def __float__(self):
        return float(self._single_value())

    def __int__(self):
        return int(self._single_value())

    def __bool__(self):
        return bool(self._single_value())

    def _single_value(self):
        if self.size != 1:
            raise ValueError("only size-1 arrays can be converted to Python scalars")
        return self._host.reshape(()).item()

    # -- indexing: integer indices give 0-d device arrays, never host scalars
    def __getitem__(self, index):
        result = self._host[_device_index(index, self._device_id)]
        if not isinstance(result, np.ndarray):
            result = np.asarray(result)
        return self._same_device(result)

    def __setitem__(self, index, value):
        self._host[_device_index(index, self._device_id)] = _operand(value, self._device_id)


def _device_index(index, device_id):
    """An index with device arrays replaced by their buffers (host integer arrays are fine: CuPy
    copies them to the device)."""
    if isinstance(index, tuple):
        return tuple(_device_index(i, device_id) for i in index)
    if isinstance(index, ndarray):
        _check_same_device(index, device_id)
        return index._host
    return index


def _check_same_device(array, device_id):
    if array._device_id != device_id:
        raise ValueError(f"The device where the array resides ({array._device_id}) is different "
                         f"from the current device ({device_id}).")


def _operand(value, device_id=None):
    """The NumPy buffer behind a device array, or a host scalar; a host array is a TypeError."""
    if isinstance(value, ndarray):
        _check_same_device(value, _current_device if device_id is None else device_id)
        return value._host
    if isinstance(value, _HOST_SCALARS) or value is None:
        return value
    raise _unsupported(value)


def _result(value):
    if isinstance(value, np.ndarray):
        return ndarray._wrap(value)
    if isinstance(value, np.generic):  # CuPy's reductions and ufuncs return 0-d arrays
        return ndarray._wrap(np.asarray(value))
    if isinstance(value, (tuple, list)):
        return type(value)(_result(v) for v in value)
    return value


class _Flags:
    def __init__(self, flags):
        self.c_contiguous = flags.c_contiguous
        self.f_contiguous = flags.f_contiguous
        self.owndata = flags.owndata

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]


# ----------------------------------------------------------------- array methods
def _method(name):
    def method(self, *args, **kwargs):
        out = kwargs.pop("out", None)
        args, kwargs = _arguments(name, args, kwargs, self._device_id, first_index=0)
        if out is not None:
            kwargs["out"] = _output(out)
        result = _result(getattr(self._host, name)(*args, **kwargs))
        if isinstance(result, ndarray) and name != "copy":  # CuPy copies onto the current device
            result._device_id = self._device_id
        return result
    method.__name__ = name
    return method


#: ndarray methods CuPy has and tinynet (or its tests) call
METHODS = ("all", "any", "argmax", "argmin", "argsort", "astype", "clip", "copy", "cumsum",
           "fill", "flatten", "max", "mean", "min", "prod", "ravel", "repeat", "reshape", "round",
           "sort", "squeeze", "std", "sum", "swapaxes", "take", "transpose", "var")
for _name in METHODS:
    setattr(ndarray, _name, _method(_name))


def _view(self, dtype=None):
    """CuPy's ``view`` reinterprets the dtype only; ``view(numpy.ndarray)`` does not exist there."""
    if isinstance(dtype, type) and issubclass(dtype, np.ndarray):
        raise TypeError("cupy.ndarray.view takes a dtype, not an array type")
    return self._same_device(self._host.view() if dtype is None else self._host.view(dtype))


ndarray.view = _view


def _binary(ufunc_name, reflected=False, in_place=False):
    def operator(self, other):
        if isinstance(other, np.ndarray) or not isinstance(other, (ndarray,) + _HOST_SCALARS):
            if isinstance(other, np.ndarray):
                raise _unsupported(other)
            return NotImplemented
        function = getattr(fake_cupy, ufunc_name)
        if in_place:
            return function(self, other, out=self)
        return function(other, self) if reflected else function(self, other)
    return operator


_OPERATORS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
              "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "matmul": "matmul",
              "and": "logical_and", "or": "logical_or"}
for _op, _ufunc in _OPERATORS.items():
    setattr(ndarray, f"__{_op}__", _binary(_ufunc))
    setattr(ndarray, f"__r{_op}__", _binary(_ufunc, reflected=True))
    setattr(ndarray, f"__i{_op}__", _binary(_ufunc, in_place=True))
for _op, _ufunc in {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                    "eq": "equal", "ne": "not_equal"}.items():
    setattr(ndarray, f"__{_op}__", _binary(_ufunc))
ndarray.__hash__ = None
ndarray.__neg__ = lambda self: fake_cupy.negative(self)
ndarray.__abs__ = lambda self: fake_cupy.absolute(self)
ndarray.__invert__ = lambda self: fake_cupy.invert(self)


# ----------------------------------------------------------------- module functions
def _output(out):
    if not isinstance(out, ndarray):
        raise TypeError("Output arguments must be cupy.ndarray")
    _check_same_device(out, _current_device)
    return out._host


class ufunc:
    """A CuPy ufunc: device arrays and host scalars in, device arrays out; ``.at`` for scatters."""

    def __init__(self, numpy_ufunc):
        self._ufunc = numpy_ufunc
        self.__name__ = numpy_ufunc.__name__

    def __call__(self, *inputs, out=None, **kwargs):
        operands = [_operand(x) for x in inputs]
        kwargs = {key: _operands(value) for key, value in kwargs.items()}   # where=, dtype=, casting=
        if out is not None:
            kwargs["out"] = _output(out)
        result = self._ufunc(*operands, **kwargs)
        return out if out is not None else _result(result)

    def at(self, target, indices, values=None):
        """``cupy.add.at``: unbuffered in place, repeated indices accumulate (cupyx.scatter_add)."""
        if self.__name__ not in UFUNCS_WITH_AT:
            raise NotImplementedError(f"cupy.{self.__name__}.at is not supported by CuPy")
        if not isinstance(target, ndarray):
            raise _unsupported(target)
        arguments = (_device_index(indices, target._device_id),)
        if values is not None:
            arguments += (_operand(values, target._device_id),)
        self._ufunc.at(target._host, *arguments)


def _function(name):
    numpy_function = getattr(np, name)

    def function(*args, **kwargs):
        out = kwargs.pop("out", None)
        args, kwargs = _arguments(name, args, kwargs, _current_device, first_index=1)
        if out is not None:
            kwargs["out"] = _output(out)
        return _result(numpy_function(*args, **kwargs))
    function.__name__ = name
    return function


def _operands(value, device_id=None):
    """Like :func:`_operand`, but also through the lists of arrays ``concatenate``/``stack`` take,
    and shapes/dtypes/axes (plain Python values) pass unchanged."""
    if isinstance(value, ndarray):
        return _operand(value, device_id)
    if isinstance(value, np.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)) and any(_holds_arrays(v) for v in value):
        return type(value)(_operands(v, device_id) for v in value)
    return value


def _holds_arrays(value):
    if isinstance(value, (ndarray, np.ndarray)):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_arrays(v) for v in value)


#: calls whose integer indices CuPy copies to the device itself (``cupy.take(a, indices)``,
#: ``a.take(indices)``): there a host array is accepted, as in ``a[indices]``
_HOST_INDICES = {"take": "indices"}


def _arguments(name, args, kwargs, device_id, first_index):
    """Every positional and keyword argument of a call with device arrays replaced by their buffers
    and host arrays refused, except a ``take``'s indices.  ``first_index``: the position of the
    indices among ``args`` (0 for a method, 1 for the module function after the array)."""
    index_keyword = _HOST_INDICES.get(name)

    def convert(value, is_index):
        if is_index and isinstance(value, np.ndarray):
            return value
        return _operands(value, device_id)
    args = tuple(convert(a, index_keyword is not None and i == first_index) for i, a in enumerate(args))
    kwargs = {key: convert(value, key == index_keyword) for key, value in kwargs.items()}
    return args, kwargs


#: ufuncs tinynet calls through the array module or through operators
UFUNCS = ("absolute", "add", "divide", "equal", "exp", "floor_divide", "greater", "greater_equal",
          "invert", "less", "less_equal", "log", "logical_and", "logical_or", "matmul", "maximum",
          "minimum", "multiply", "negative", "not_equal", "power", "remainder", "sign", "sqrt",
          "subtract", "tanh", "true_divide")
#: ufuncs whose ``.at`` CuPy implements (cupyx.scatter_add and friends)
UFUNCS_WITH_AT = ("add", "subtract", "maximum", "minimum")
#: other functions tinynet calls through the array module
FUNCTIONS = ("arange", "argmax", "broadcast_to", "concatenate", "empty", "empty_like",
             "expand_dims", "full", "ones", "ones_like", "split", "stack", "sum", "swapaxes",
             "take", "tensordot", "where", "zeros", "zeros_like")


def _copy_to_device(a, dtype=None, order="K"):
    if isinstance(a, ndarray):
        host = a._host
        if a._device_id != _current_device:  # a peer-to-peer copy onto the current device
            host = host.copy()
    else:
        host = a
    return np.array(host, dtype=dtype, order=order, copy=True)


class _FakeCupyModule(types.ModuleType):
    """The stand-in module: only the names CuPy has and tinynet uses; anything else is an error."""

    ndarray = ndarray
    ufunc = ufunc

    def __getattr__(self, name):
        raise AttributeError(f"the CuPy stand-in does not offer {name!r}: tinynet did not use it when the "
                             f"stand-in was written; add it to tests/fake_cupy.py if CuPy has it")

    @staticmethod
    def asarray(a, dtype=None, order=None):
        """Host data is copied to the device; a device array on the current device is returned as is."""
        if isinstance(a, ndarray) and a._device_id == _current_device and (dtype is None or a.dtype == dtype):
            return a
        return ndarray._wrap(_copy_to_device(a, dtype, order or "K"))

    @staticmethod
    def array(a, dtype=None, copy=True, order="K", ndmin=0):
        host = _copy_to_device(a, dtype, order)
        return ndarray._wrap(host.reshape((1,) * (ndmin - host.ndim) + host.shape) if ndmin > host.ndim else host)

    @staticmethod
    def ascontiguousarray(a, dtype=None):
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        _check_same_device(a, _current_device)
        host = np.ascontiguousarray(a._host, dtype=dtype)
        return a if host is a._host else ndarray._wrap(host)

    @staticmethod
    def asnumpy(a):
        """The device-to-host copy (a host array is returned unchanged, as CuPy does)."""
        return a.get() if isinstance(a, ndarray) else np.asarray(a)

    def get_array_module(self, *arrays):
        return self if any(isinstance(a, ndarray) for a in arrays) else np


fake_cupy = _FakeCupyModule("fake_cupy")
for _name in UFUNCS:
    setattr(fake_cupy, _name, ufunc(getattr(np, _name)))
for _name in FUNCTIONS:
    setattr(fake_cupy, _name, _function(_name))
for _name in ("float16", "float32", "float64", "int32", "int64", "uint8", "bool_", "dtype", "newaxis"):
    setattr(fake_cupy, _name, getattr(np, _name))


# ----------------------------------------------------------------- random numbers
class RandomState:
    """``cupy.random.RandomState``: its draws are device arrays.  (The numbers differ from cuRAND's;
    tests that compare streams draw their reference from a second RandomState of the same module.)"""

    def __init__(self, seed=None):
        self._state = np.random.RandomState(seed)

    def random_sample(self, size=None, dtype=float):
        return ndarray._wrap(np.asarray(self._state.random_sample(size), dtype=dtype))

    def standard_normal(self, size=None, dtype=float):
        return ndarray._wrap(np.asarray(self._state.standard_normal(size), dtype=dtype))

    def permutation(self, num):
        return ndarray._wrap(self._state.permutation(num))

    def randint(self, low, high=None, size=None, dtype=int):
        return ndarray._wrap(np.asarray(self._state.randint(low, high, size), dtype=dtype))


fake_cupy.random = types.SimpleNamespace(RandomState=RandomState)


# ----------------------------------------------------------------- devices
class Device:
    """``cupy.cuda.Device(i)``: as a context it makes ``i`` the current device."""

    def __init__(self, device=None):
        self.id = _current_device if device is None else int(device)
        if not 0 <= self.id < device_count:
            raise RuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self._previous = []

    def synchronize(self):
        pass

    def use(self):
        global _current_device
        _current_device = self.id

    def __enter__(self):
        global _current_device
        self._previous.append(_current_device)
        _current_device = self.id
        return self

    def __exit__(self, *exc):
        global _current_device
        _current_device = self._previous.pop()
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


fake_cupy.cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: device_count),
    Device=Device,
)


@contextlib.contextmanager
def devices(count):
    """Pretend to have ``count`` GPUs (device 0 current) inside the ``with`` block."""
    global device_count, _current_device
    saved = device_count, _current_device
    device_count, _current_device = count, 0
    try:
        yield
    finally:
        device_count, _current_device = saved


# ----------------------------------------------------------------- numba's CUDA simulator
#: ``(kernel, argument types)`` of every launch while :func:`recording_launches` is active
_launch_records = None


@contextlib.contextmanager
def recording_launches():
    """Collect ``(python function, tuple of numba types)`` for every simulated kernel launch."""
    global _launch_records
    previous, _launch_records = _launch_records, []
    try:
        yield _launch_records
    finally:
        _launch_records = previous


class _HostView:
    def __init__(self, interface):
        self.__array_interface__ = dict(interface, version=3)


def _as_simulator_argument(value):
    interface = getattr(type(value), "__cuda_array_interface__", None)
    if interface is None:
        return value
    return np.asarray(_HostView(value.__cuda_array_interface__))  # a view: writes reach the buffer


class WriteRace(AssertionError):
    """Two threads of one simulated launch wrote the same element without an atomic operation."""


_writers = None                       # element address -> (block, thread) of its first writer
_races = []
_in_atomic = threading.local()


def _element_address(array, index):
    if not isinstance(index, tuple):
        index = (index,)
    if len(index) != array.ndim or not all(isinstance(i, (int, np.integer)) for i in index):
        return None  # a slice or a field: not an element write
    offset = sum((int(i) % n) * stride for i, n, stride in zip(index, array.shape, array.strides))
    return array.__array_interface__["data"][0] + offset


def _note_write(array, index):
    if _writers is None or getattr(_in_atomic, "active", False):
        return
    address = _element_address(array, index)
    if address is None:
        return
    thread = threading.current_thread()
    block, within = getattr(thread, "blockIdx", None), getattr(thread, "threadIdx", None)
    writer = tuple((d.x, d.y, d.z) if d is not None else None for d in (block, within))
    first = _writers.setdefault(address, writer)
    if first != writer and len(_races) < 5:
        element = tuple(int(i) for i in index) if isinstance(index, tuple) else int(index)
        _races.append(f"element {element} written by threads (block, thread) {first} and {writer}")


def _run_blocks_thread_by_thread():
    """Run a simulated block's threads one after another in the calling thread.

    numba's simulator starts one Python thread per CUDA thread and polls them in a busy loop,
    which made a 256-thread launch cost tens of milliseconds and the GPU gradchecks minutes.
    Kernels that never call ``syncthreads`` (none of tinynet's do) do not need the threads: each
    simulated thread runs to completion in turn, seen by the kernel API as that thread (its
    ``threadIdx``/``blockIdx``).  The order is the simulator's own, so results are unchanged;
    kernels that synchronise keep the threaded original.  (Write races are still caught: the
    bridge tracks which simulated thread wrote each element.)
    """
    from numba.cuda.simulator import kernel as simulator_kernel
    manager = simulator_kernel.BlockManager
    threaded_run = manager.run

    def run(self, grid_point, *args):
        names = getattr(self._f, "__code__", None)
        names = names.co_names if names is not None else ("syncthreads",)
        if any(name.startswith("syncthreads") or name == "shared" for name in names):
            return threaded_run(self, grid_point, *args)
        identity = threading.get_ident()
        caller = threading._active.get(identity)
        block = simulator_kernel.Dim3(*grid_point)
        try:
            for block_point in np.ndindex(*self._block_dim):
                thread = _SimulatedThread(block, simulator_kernel.Dim3(*block_point), self._block_dim)
                threading._active[identity] = thread  # what threading.current_thread() answers
                try:
                    self._f(*args)
                except Exception as error:
                    raise type(error)(f"tid={list(block_point)} ctaid={list(grid_point)}: {error}") from error
        finally:
            if caller is not None:
                threading._active[identity] = caller

    manager.run = run

    # FakeWithinKernelCUDAArray.__getattr__ calls dir() on the array for every attribute read
    # (x.shape in a kernel): most of the simulator's time.  Plain array attributes go straight.
    from numba.cuda.simulator.cudadrv.devicearray import FakeWithinKernelCUDAArray
    listed_getattr = FakeWithinKernelCUDAArray.__getattr__

    def getattr_directly(self, name):
        try:
            return getattr(self._item._ary, name)
        except AttributeError:
            return listed_getattr(self, name)

    FakeWithinKernelCUDAArray.__getattr__ = getattr_directly


class _SimulatedThread:
    """What the simulator's kernel API asks ``threading.current_thread()`` for."""

    def __init__(self, block, thread, block_dim):
        self.blockIdx, self.threadIdx = block, thread
        dims = tuple(block_dim) + (1, 1)
        self.thread_id = thread.x + dims[0] * (thread.y + dims[1] * thread.z)


def install_simulator_bridge():
    """Let simulated kernels take arrays with ``__cuda_array_interface__`` (as the real target does),
    record each launch's argument types, and fail launches with write races.  Idempotent."""
    global _writers
    import numba
    from numba.cuda.simulator import kernelapi
    from numba.cuda.simulator.cudadrv.devicearray import FakeWithinKernelCUDAArray
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    if getattr(FakeCUDAKernel, "_tinynet_bridge", False):
        return
    original_call = FakeCUDAKernel.__call__
    original_setitem = FakeWithinKernelCUDAArray.__setitem__

    def call(self, *args):
        global _writers
        args = tuple(_as_simulator_argument(a) for a in args)
        if self._device:
            return original_call(self, *args)
        if _launch_records is not None:
            _launch_records.append((self.fn, tuple(numba.typeof(a) for a in args)))
        _writers = {}
        del _races[:]
        try:
            result = original_call(self, *args)
        finally:
            _writers = None
        if _races:
            raise WriteRace(f"{self.fn.__module__}.{self.fn.__name__}: non-atomic writes of one element "
                            f"by two threads (a GPU would lose updates; use cuda.atomic): " + "; ".join(_races))
        return result

    def setitem(self, index, value):
        _note_write(self._item._ary, index)
        return original_setitem(self, index, value)

    def atomic(operation):
        def run(*args, **kwargs):
            _in_atomic.active = True
            try:
                return operation(*args, **kwargs)
            finally:
                _in_atomic.active = False
        return run

    _run_blocks_thread_by_thread()
    for name in [n for n in vars(kernelapi.FakeCUDAAtomic) if not n.startswith("_")]:
        setattr(kernelapi.FakeCUDAAtomic, name, atomic(getattr(kernelapi.FakeCUDAAtomic, name)))
    FakeCUDAKernel.__call__ = call
    FakeWithinKernelCUDAArray.__setitem__ = setitem
    FakeCUDAKernel._tinynet_bridge = True
