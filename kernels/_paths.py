"""Choosing an op's CPU or GPU path: the one place in ``kernels/`` that asks where data lives.

Each kernel file keeps its CPU path (NumPy + numba) and its GPU path (CuPy, and
numba.cuda where a hand-written kernel pays) side by side, and names the pair
once::

    _normalize = device_paths(cpu=_normalize_cpu, gpu=_normalize_gpu)
    ...
    _normalize(x, scale, shift, y)       # runs the path of the device x lives on

so the body of an op reads as its math, not as ``if xp is numpy`` branches.
The device is decided by the array arguments only (``tinynet.backend`` knows
NumPy from CuPy); mixing devices in one call is an error, as in CuPy.
"""
import numpy

from tinynet.backend import get_array_module, is_gpu_array

from ._numba import THREADS_PER_BLOCK, blocks_for


def on_gpu(*arrays):
    """True when the arrays live on the GPU (CuPy); raises if some do and some do not.

    Arguments that are not arrays (sizes, flags, NumPy scalars) are ignored.
    """
    present = [a for a in arrays if isinstance(a, numpy.ndarray) or is_gpu_array(a)]
    flags = {is_gpu_array(a) for a in present}
    if len(flags) > 1:
        devices = ", ".join(f"{tuple(a.shape)} on {'gpu' if is_gpu_array(a) else 'cpu'}" for a in present)
        raise ValueError(f"arrays on different devices in one op: {devices}; move them to one device first")
    return flags == {True}


class DevicePaths:
    """A CPU function and a GPU function for one step of an op, called by the data's device."""

    def __init__(self, cpu, gpu, name=None):
        self.cpu, self.gpu = cpu, gpu
        self.__name__ = name or getattr(cpu, "__name__", "op").removesuffix("_cpu")

    def __call__(self, *args, **kwargs):
        path = self.gpu if on_gpu(*args) else self.cpu
        return path(*args, **kwargs)

    def __repr__(self):
        return f"<device paths {self.__name__}: cpu={self.cpu.__name__}, gpu={self.gpu.__name__}>"


def device_paths(cpu, gpu, name=None):
    """Pair an op step's CPU and GPU functions (same arguments) into one callable."""
    return DevicePaths(cpu, gpu, name)


def one_thread_per_element(cuda_kernel, grid_argument=0):
    """The GPU path of a numba.cuda kernel written with one thread per element of one argument.

    ``one_thread_per_element(_forward_gpu, 1)(x, y, ...)`` launches ``_forward_gpu`` over
    enough blocks to give every element of ``y`` (argument 1) its thread, so a kernel's GPU
    path takes the same arguments as its CPU function and both fit :func:`device_paths`.
    """
    def launch(*args):
        cuda_kernel[blocks_for(args[grid_argument].size), THREADS_PER_BLOCK](*args)

    launch.__name__ = getattr(cuda_kernel, "__name__", "gpu_kernel")
    return launch


def array_module(*arrays):
    """``numpy`` or ``cupy``, the module of the arrays (for code that is the same on both)."""
    return numpy if not on_gpu(*arrays) else get_array_module(*arrays)
