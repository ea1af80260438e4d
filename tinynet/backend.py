"""The one place in tinynet that knows NumPy from CuPy.

Every other module asks this one for the array module of the data it holds
(``xp = get_array_module(x)``) and writes ``xp.exp(x)`` instead of ``np.exp(x)``
or ``cupy.exp(x)``.  The same layer code then runs on the CPU (NumPy) and on the
GPU (CuPy), and the choice is made by *where the data lives*, never by an
``if gpu:`` flag threaded through the layers.

Devices are named ``'cpu'`` and ``'gpu'`` (``'cuda'`` is accepted as a synonym).

For tests, :func:`set_gpu_module` swaps in a stand-in for CuPy (for example a
NumPy-backed module whose arrays are a NumPy subclass), so that the whole GPU
path -- device moves, dispatch and kernel launches under numba's CUDA
simulator -- can run on a machine without a GPU.
"""
from __future__ import annotations

import os

import numpy

_gpu_module = None          # the CuPy module (or a stand-in) once loaded
_gpu_module_tried = False   # True after the first import attempt, success or not

CPU = "cpu"
GPU = "gpu"
_DEVICE_ALIASES = {"cpu": CPU, "gpu": GPU, "cuda": GPU}


# ----------------------------------------------------------------- the GPU module
def gpu_module():
    """Return the CuPy module, or ``None`` where CuPy cannot be imported.

    The import is attempted once and never raises: a machine with CuPy installed
    but no driver, or without CuPy at all, simply has no GPU backend.
    """
    global _gpu_module, _gpu_module_tried
    if not _gpu_module_tried:
        _gpu_module_tried = True
        if os.environ.get("TINYNET_DISABLE_GPU") != "1":
            try:
                import cupy  # noqa: the only import of cupy in tinynet
                _gpu_module = cupy
            except Exception:  # ImportError, but also CUDA library load errors
                _gpu_module = None
    return _gpu_module


def set_gpu_module(module):
    """Use ``module`` as the GPU array module (``None`` disables the GPU backend).

    Meant for tests that run the GPU path with a NumPy-backed stand-in for CuPy.
    Returns the module that was in use before, so a test can restore it.
    """
    global _gpu_module, _gpu_module_tried
    previous = _gpu_module if _gpu_module_tried else None
    _gpu_module, _gpu_module_tried = module, True
    _generators.pop(GPU, None)
    return previous


def gpu_available() -> bool:
    """True when a GPU array module is importable *and* has a usable device."""
    xp = gpu_module()
    if xp is None:
        return False
    try:
        return xp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CuPy installed, but no driver or no device
        return False


def is_gpu_array(x) -> bool:
    """True when ``x`` is an array of the GPU module (a CuPy ndarray)."""
    xp = _gpu_module
    return xp is not None and isinstance(x, xp.ndarray)


def get_array_module(*arrays):
    """The array module (``numpy`` or ``cupy``) that the given arrays live in.

    Non-array arguments (Python scalars, ``None``) are ignored; with no GPU array
    among the arguments the answer is ``numpy``.
    """
    for x in arrays:
        if is_gpu_array(x):
            return _gpu_module
    return numpy


# ----------------------------------------------------------------- devices
def normalize_device(device) -> str:
    """Map ``'cpu'``, ``'gpu'``, ``'cuda'`` (any case) to ``'cpu'`` or ``'gpu'``."""
    if device is None:
        return CPU
    name = str(device).lower()
    if name.startswith("cuda:") or name.startswith("gpu:"):
        name = name.split(":")[0]
    if name not in _DEVICE_ALIASES:
        raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu' (or 'cuda')")
    return _DEVICE_ALIASES[name]


def device_of(x) -> str:
    """``'gpu'`` for a GPU array, ``'cpu'`` for anything else."""
    return GPU if is_gpu_array(x) else CPU


def array_module_for(device):
    """The array module that holds arrays on ``device``."""
    if normalize_device(device) == CPU:
        return numpy
    xp = gpu_module()
    if xp is None:
        raise RuntimeError(
            "device 'gpu' requested but CuPy is not installed or could not be imported; "
            "install the GPU extra (pip install -e .[gpu]) or use device='cpu'")
    return xp


def to_device(x, device):
    """Move (or keep) array ``x`` on ``device``; returns ``x`` itself if it is already there."""
    device = normalize_device(device)
    if device == device_of(x):
        return x
    if device == CPU:
        return _gpu_module.asnumpy(x)
    return array_module_for(GPU).asarray(x)


def to_numpy(x):
    """A NumPy array holding the values of ``x`` (copied from the GPU if needed)."""
    if is_gpu_array(x):
        return _gpu_module.asnumpy(x)
    return numpy.asarray(x)


def synchronize(device=GPU):
    """Wait for queued GPU work to finish (a no-op on the CPU); used by timers."""
    if normalize_device(device) == GPU and _gpu_module is not None:
        try:
            _gpu_module.cuda.Device().synchronize()
        except Exception:
            pass


# ----------------------------------------------------------------- random numbers
_generators: dict = {}
_seed = None


class _CPUGenerator:
    """Seeded random numbers on the CPU (a NumPy ``Generator``, PCG64)."""

    def __init__(self, seed):
        self.generator = numpy.random.default_rng(seed)

    def uniform(self, shape, dtype=numpy.float32):
        return self.generator.random(shape, dtype=dtype)

    def normal(self, shape, dtype=numpy.float32):
        return self.generator.standard_normal(shape, dtype=dtype)

    def permutation(self, n):
        return self.generator.permutation(n)

    def integers(self, low, high, shape):
        return self.generator.integers(low, high, size=shape)

    def get_state(self):
        return self.generator.bit_generator.state

    def set_state(self, state):
        self.generator.bit_generator.state = state


class _GPUGenerator:
    """Seeded random numbers on the GPU (CuPy's ``RandomState``)."""

    def __init__(self, seed):
        self.xp = array_module_for(GPU)
        self.generator = self.xp.random.RandomState(seed)

    def uniform(self, shape, dtype=numpy.float32):
        return self.generator.random_sample(shape).astype(dtype, copy=False)

    def normal(self, shape, dtype=numpy.float32):
        return self.generator.standard_normal(shape).astype(dtype, copy=False)

    def permutation(self, n):
        return self.generator.permutation(n)

    def integers(self, low, high, shape):
        return self.generator.randint(low, high, size=shape)

    def get_state(self):
        return None  # CuPy's generator state is not exposed portably

    def set_state(self, state):
        pass


def manual_seed(seed: int):
    """Seed the random generators of every backend; CPU runs become bit-reproducible."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def generator(device=CPU):
    """The seeded random generator for ``device`` (created on first use)."""
    device = normalize_device(device)
    if device not in _generators:
        seed = None if _seed is None else _seed + (0 if device == CPU else 1)
        _generators[device] = _CPUGenerator(seed) if device == CPU else _GPUGenerator(seed)
    return _generators[device]


# ----------------------------------------------------------------- array helpers
def scatter_add(target, index, values):
    """``target[index] += values`` where repeated indices add up (NumPy's and CuPy's ``add.at``)."""
    get_array_module(target).add.at(target, index, values)
