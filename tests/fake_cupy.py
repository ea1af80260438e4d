"""A NumPy-backed stand-in for the CuPy module, for running tinynet's GPU path without a GPU.

CuPy's API mirrors NumPy's, so a module whose functions are NumPy's and whose
arrays are a NumPy *subclass* (``fake_cupy.ndarray``) is enough for tinynet's
backend to believe that data lives "on the GPU": ``get_array_module`` returns
this module for such arrays, ``Tensor.to('gpu')`` moves into it, and the kernels
take their GPU branch, where numba.cuda kernels run under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, which accepts NumPy arrays).

Only what tinynet uses is imitated: array creation and math (delegated to NumPy,
results re-labelled as ``ndarray``), ``asnumpy``, ``get_array_module``,
``random.RandomState``, and ``cuda.runtime.getDeviceCount`` / ``cuda.Device``.
"""
import types

import numpy as np


class ndarray(np.ndarray):
    """An array that tinynet's backend takes for a GPU array."""

    def __array_finalize__(self, obj):
        pass

    def get(self):
        """CuPy's device-to-host copy."""
        return np.array(self).view(np.ndarray)


def _to_device(value):
    if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
        return value.view(ndarray)
    if isinstance(value, tuple):
        return tuple(_to_device(v) for v in value)
    if isinstance(value, list):
        return [_to_device(v) for v in value]
    return value


def _wrapped(function):
    def call(*args, **kwargs):
        return _to_device(function(*args, **kwargs))
    call.__name__ = getattr(function, "__name__", "function")
    call.__doc__ = getattr(function, "__doc__", None)
    return call


class _RandomState:
    def __init__(self, seed=None):
        self._state = np.random.RandomState(seed)

    def __getattr__(self, name):
        return _wrapped(getattr(self._state, name))


class _Device:
    def __init__(self, index=0):
        self.id = index

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _FakeCupyModule(types.ModuleType):
    ndarray = ndarray

    def __getattr__(self, name):
        value = getattr(np, name)
        if callable(value) and not isinstance(value, type):
            return _wrapped(value)
        return value

    @staticmethod
    def asarray(a, dtype=None, order=None):
        return np.asarray(a, dtype=dtype, order=order).view(ndarray)

    @staticmethod
    def array(a, dtype=None, copy=True, order="K", ndmin=0):
        return np.array(a, dtype=dtype, copy=copy, order=order, ndmin=ndmin).view(ndarray)

    @staticmethod
    def ascontiguousarray(a, dtype=None):
        return np.ascontiguousarray(a, dtype=dtype).view(ndarray)

    @staticmethod
    def asnumpy(a):
        return np.array(a).view(np.ndarray)

    def get_array_module(self, *arrays):
        return self if any(isinstance(a, ndarray) for a in arrays) else np


fake_cupy = _FakeCupyModule("fake_cupy")
fake_cupy.random = types.SimpleNamespace(RandomState=_RandomState)
fake_cupy.cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
    Device=_Device,
)
