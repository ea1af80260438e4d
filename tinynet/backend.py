"""The one place in tinynet that knows NumPy from CuPy.

Every other module asks this one for the array module of the data it holds
(``xp = get_array_module(x)``) and writes ``xp.exp(x)`` instead of ``np.exp(x)``
or ``cupy.exp(x)``.  The same layer code then runs on the CPU (NumPy) and on the
GPU (CuPy), and the choice is made by *where the data lives*, never by an
``if gpu:`` flag threaded through the layers.

Devices are named ``'cpu'``, ``'gpu'`` and ``'gpu:N'`` for the N-th GPU (CuPy's device N);
``'gpu'`` is GPU 0 (``'gpu:0'`` is spelled ``'gpu'``), and ``'cuda'``/``'cuda:N'`` are accepted
as synonyms.  Asking for a GPU that does not exist is a ``ValueError`` naming the GPUs there are.

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
    for device in [d for d in _generators if d != CPU]:
        del _generators[device]
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
    """The canonical name of ``device``: ``'cpu'``, ``'gpu'`` (GPU 0) or ``'gpu:N'`` (N >= 1).

    Accepts ``'cpu'``, ``'gpu'``, ``'cuda'`` (any case), with an optional ``:N`` GPU index.
    """
    if device is None:
        return CPU
    text = str(device).strip().lower()
    name, colon, index = text.partition(":")
    if name not in _DEVICE_ALIASES or (colon and (_DEVICE_ALIASES[name] == CPU or not index.isdigit())):
        raise ValueError(f"unknown device {device!r}: expected 'cpu', 'gpu' or 'gpu:N' "
                         f"(or 'cuda', 'cuda:N') with N a GPU index")
    name = _DEVICE_ALIASES[name]
    if name == CPU or not colon or int(index) == 0:
        return name
    return f"{GPU}:{int(index)}"


def device_index(device):
    """The GPU index of ``device`` (0 for ``'gpu'``), or ``None`` for the CPU."""
    device = normalize_device(device)
    if device == CPU:
        return None
    return int(device.partition(":")[2] or 0)


def _gpu_name(index: int) -> str:
    return GPU if index == 0 else f"{GPU}:{index}"


def device_of(x) -> str:
    """``'gpu'``/``'gpu:N'`` for an array on GPU 0/N, ``'cpu'`` for anything else."""
    if not is_gpu_array(x):
        return CPU
    return _gpu_name(int(x.device.id))


def array_module_for(device):
    """The array module that holds arrays on ``device``; for a GPU, checks that it exists."""
    index = device_index(device)
    if index is None:
        return numpy
    xp = gpu_module()
    if xp is None:
        raise RuntimeError(
            f"device {normalize_device(device)!r} requested but CuPy is not installed or could not be "
            f"imported; install the GPU extra (pip install -e .[gpu]) or use device='cpu'")
    try:
        count = int(xp.cuda.runtime.getDeviceCount())
    except Exception as error:  # CuPy installed, but no driver
        raise ValueError(f"device {normalize_device(device)!r} requested but CUDA reports no usable GPU "
                         f"({type(error).__name__}: {error})") from None
    if index >= count:
        there = "no GPU" if count == 0 else (
            f"{count} GPU{'s' if count > 1 else ''} ({', '.join(f'gpu:{i}' for i in range(count))})")
        raise ValueError(f"device {normalize_device(device)!r} does not exist: this machine has {there}")
    return xp


def to_device(x, device):
    """Move (or keep) array ``x`` on ``device``; returns ``x`` itself if it is already there.

    A move to GPU N copies onto CuPy's device N (from the host or from another GPU).
    """
    device = normalize_device(device)
    if device == device_of(x):
        return x
    if device == CPU:
        return _gpu_module.asnumpy(x)
    xp = array_module_for(device)
    with xp.cuda.Device(device_index(device)):
        return x.copy() if is_gpu_array(x) else xp.asarray(x)  # copy() lands on the current device


def to_numpy(x):
    """A NumPy array holding the values of ``x`` (copied from the GPU if needed)."""
    if is_gpu_array(x):
        return _gpu_module.asnumpy(x)
    return numpy.asarray(x)


def synchronize(device=GPU):
    """Wait for queued GPU work to finish (a no-op on the CPU); used by timers."""
    index = device_index(device)
    if index is not None and _gpu_module is not None:
        try:
            _gpu_module.cuda.Device(index).synchronize()
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
    """Seeded random numbers on one GPU (CuPy's ``RandomState``, cuRAND underneath).

    cuRAND's generator state cannot be read back portably, so this generator keeps
    what determines it: the seed it was created with and the list of draws made
    since (method, arguments, how many times in a row).  ``get_state()`` returns
    those as plain numbers, strings and lists (a checkpoint stores them as they
    are), and ``set_state()`` re-seeds and replays the draws, generating and
    dropping the same numbers: exact on any CuPy version and any GPU, and cheap
    next to the training that drew them (replaying a run's dropout masks takes a
    fraction of a second on a GPU).
    """

    KIND = "cupy.random.RandomState+replay"

    def __init__(self, seed, index=0):
        self.xp = array_module_for(_gpu_name(index))
        self.index = index
        if seed is None:  # CuPy would seed from the OS; draw the seed ourselves so it can be saved
            seed = int(numpy.random.SeedSequence().entropy % 2**63)
        self._restart(int(seed))

    def _restart(self, seed):
        self.seed = seed
        self.draws = []  # [method, arguments, count]
        with self.xp.cuda.Device(self.index):
            self.generator = self.xp.random.RandomState(seed)

    def _draw(self, method, *arguments):
        arguments = [list(a) if isinstance(a, tuple) else a for a in arguments]
        if self.draws and self.draws[-1][0] == method and self.draws[-1][1] == arguments:
            self.draws[-1][2] += 1
        else:
            self.draws.append([method, arguments, 1])
        return self._call(method, arguments)

    def _call(self, method, arguments):
        arguments = [tuple(a) if isinstance(a, list) else a for a in arguments]
        with self.xp.cuda.Device(self.index):
            return getattr(self.generator, method)(*arguments)

    def uniform(self, shape, dtype=numpy.float32):
        return self._draw("random_sample", _shape_tuple(shape)).astype(dtype, copy=False)

    def normal(self, shape, dtype=numpy.float32):
        return self._draw("standard_normal", _shape_tuple(shape)).astype(dtype, copy=False)

    def permutation(self, n):
        return self._draw("permutation", int(n))

    def integers(self, low, high, shape):
        return self._draw("randint", int(low), int(high), None if shape is None else _shape_tuple(shape))

    def get_state(self):
        return {"bit_generator": self.KIND, "seed": self.seed,
                "draws": [[method, list(arguments), count] for method, arguments, count in self.draws]}

    def set_state(self, state):
        if not isinstance(state, dict) or state.get("bit_generator") != self.KIND:
            raise ValueError(f"set_state: expected a GPU generator state from get_state() "
                             f"(bit_generator {self.KIND!r}), got {state!r:.200}")
        self._restart(int(state["seed"]))
        for method, arguments, count in state["draws"]:
            arguments = [list(a) if isinstance(a, tuple) else a for a in arguments]
            for _ in range(int(count)):
                self._call(method, arguments)
            self.draws.append([method, arguments, int(count)])


def _shape_tuple(shape):
    return (int(shape),) if isinstance(shape, (int, numpy.integer)) else tuple(int(n) for n in shape)


def manual_seed(seed: int):
    """Seed the random generators of every backend; CPU runs become bit-reproducible.

    The CPU generator gets ``seed``, GPU N's generator ``seed + 1 + N``.
    """
    global _seed
    _seed = int(seed)
    _generators.clear()


def generator(device=CPU):
    """The seeded random generator for ``device`` (created on first use; one per GPU)."""
    device = normalize_device(device)
    if device not in _generators:
        if device == CPU:
            _generators[device] = _CPUGenerator(_seed)
        else:
            index = device_index(device)
            _generators[device] = _GPUGenerator(None if _seed is None else _seed + 1 + index, index)
    return _generators[device]


# ----------------------------------------------------------------- array helpers
def scatter_add(target, index, values):
    """``target[index] += values`` where repeated indices add up (NumPy's and CuPy's ``add.at``)."""
    get_array_module(target).add.at(target, index, values)


# ----------------------------------------------------------------- CPU threads
# The CPU kernels run their tasks on a pool of tinynet's own Python threads (numba code that
# releases the GIL, kernels/_numba.py), never on numba's OpenMP/TBB/workqueue layer, so no
# second OpenMP runtime competes with PyTorch's in the same process.  How many threads: what
# set_num_threads chose, else NUMBA_NUM_THREADS (the variable that sized numba's own layer),
# else the cores this process may run on.
_num_threads = None


def _default_num_threads():
    exported = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if exported.isdigit() and int(exported) > 0:
        return int(exported)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """Threads the CPU kernels split their work over (see :func:`set_num_threads`)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_num_threads()
    return _num_threads


def set_num_threads(count: int):
    """Run the CPU kernels on ``count`` threads (1: in the calling thread only).

    The GEMMs run on NumPy's BLAS threads, which this does not change (threadpoolctl or
    ``OPENBLAS_NUM_THREADS`` set those).
    """
    global _num_threads
    count = int(count)
    if count < 1:
        raise ValueError(f"set_num_threads: expected at least 1 thread, got {count}")
    _num_threads = count
