"""Result arrays in recycled CPU memory: a training step's outputs without fresh pages every time.

A training step allocates its activations and gradients anew, and frees them before the next
step allocates the same sizes again.  glibc hands out large blocks as fresh ``mmap`` pages (from
32 MiB always, below that whenever its dynamic threshold is lower), and the kernel zeroes every
page at its first touch: ResNet-18's b=32 step took 17,700 page faults and 0.1-0.45 CPU-s of
system time, ``clear_page`` alone 7.5 % of its profile (benchmarks/README.md, "Measurements
behind the design").  Here a freed result's memory waits for the next request of its exact byte
size, which a training loop makes at the next step.

The peak stays the peak.  Memory that waits is memory the process holds: AlexNet's weight
gradients, freed by ``zero_grad`` before the forward pass, would wait through all of it.  So when
a request finds no block of its size, the blocks that have waited longest are freed until the
blocks in use and those waiting add up to no more than the most that was ever in use at once --
what the process would hold at its peak without recycling.  (Keeping every block took the
AlexNet b=64 step's process peak from 1,515 to 1,785 MiB; with the rule it was 1,534.)

How an array gives its memory back when its last view goes: the memory is a NumPy ``uint8``
block that this module owns.  Each result is made through a ``ctypes`` array over the block (the
*lease*): NumPy keeps the object it took the buffer from as the base of the result, and every
view of the result keeps the result, so the lease lives exactly as long as some array can reach
the memory, and a ``weakref.finalize`` on the lease returns the block when it goes.  (A
``memoryview`` would not do: ``numpy.frombuffer`` takes a new memoryview of the block beneath it,
so the lease would go at once.)  Code that keeps only a raw address (``arr.ctypes.data``) past
the array's life would see the memory reused, as it would see it freed without recycling.

Only NumPy results of at least ``MIN_BYTES`` are recycled: smaller ones come from glibc's heap,
which reuses them without page faults, and GPU arrays from CuPy's own memory pool.
``release_recycled_memory()`` frees every waiting block.
"""
import contextlib
import ctypes
import os
import threading
import weakref

import numpy

#: smallest result (bytes) that is recycled
MIN_BYTES = 1 << 20
#: most memory (bytes) that waits for reuse, whatever the peak
MAX_FREE_BYTES = 2 << 30

_enabled = [True]
_free = []                 # (byte size, block) waiting for reuse, in the order they were freed
_free_bytes = [0]
_live_bytes = [0]          # bytes of recycled results in use
_peak_live_bytes = [0]     # the most ever in use at once
# re-entrant: a garbage collection inside a locked section may free a cycle that holds a result,
# whose finalizer then gives its block back from the same thread
_lock = threading.RLock()


def _reset_lock_after_fork():
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _trim(limit):
    """Free the blocks that have waited longest until at most ``limit`` bytes wait (under the lock)."""
    drop = 0
    while _free_bytes[0] > limit and drop < len(_free):
        _free_bytes[0] -= _free[drop][0]
        drop += 1
    del _free[:drop]


def _take(size):
    """The most recently freed block of ``size`` bytes, or None (under the lock)."""
    for index in range(len(_free) - 1, -1, -1):
        if _free[index][0] == size:
            _free_bytes[0] -= size
            return _free.pop(index)[1]
    return None


def _give_back(size, block):
    with _lock:
        _live_bytes[0] -= size
        _free.append((size, block))
        _free_bytes[0] += size
        _trim(MAX_FREE_BYTES)


def empty(xp, shape, dtype):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` for a kernel's result: from
    recycled memory when it is a large NumPy array, otherwise ``xp.empty``."""
    dtype = numpy.dtype(dtype)
    shape = tuple(int(extent) for extent in shape)
    count = 1
    for extent in shape:
        count *= extent
    size = count * dtype.itemsize
    if xp is not numpy or size < MIN_BYTES or not _enabled[0]:
        return xp.empty(shape, dtype=dtype)
    with _lock:
        block = _take(size)
        _live_bytes[0] += size
        _peak_live_bytes[0] = max(_peak_live_bytes[0], _live_bytes[0])
        if block is None:
            # in use + waiting <= the most ever in use (the module docstring)
            _trim(_peak_live_bytes[0] - _live_bytes[0])
    if block is None:
        try:
            block = numpy.empty(size, dtype=numpy.uint8)
        except BaseException:
            with _lock:
                _live_bytes[0] -= size          # nothing was handed out
            raise
    lease = (ctypes.c_char * size).from_buffer(block)
    weakref.finalize(lease, _give_back, size, block).atexit = False
    return numpy.frombuffer(lease, dtype=dtype, count=count).reshape(shape)


def zeros(xp, shape, dtype):
    """:func:`empty`, filled with zeros."""
    array = empty(xp, shape, dtype)
    array[...] = 0
    return array


@contextlib.contextmanager
def disabled():
    """Plain allocations inside the block: ``training_cost.measure_step_peak`` measures the
    freed-as-you-go peak that its formula models, without blocks waiting for reuse."""
    previous, _enabled[0] = _enabled[0], False
    try:
        yield
    finally:
        _enabled[0] = previous


def release_recycled_memory():
    """Free every block waiting for reuse (the arrays in use keep theirs), and count the peak in
    use afresh from what is in use now."""
    with _lock:
        _trim(0)
        _peak_live_bytes[0] = _live_bytes[0]


def recycled_bytes():
    """Bytes waiting for reuse."""
    return _free_bytes[0]
