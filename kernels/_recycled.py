"""Result arrays in recycled CPU memory: a training step's outputs without fresh pages every time.

A training step allocates its activations and gradients anew, and frees them before the next
step allocates the same sizes again.  glibc hands out large blocks as fresh ``mmap`` pages (from
32 MiB always, below that whenever its dynamic threshold is lower), and the kernel zeroes every
page at its first touch: ResNet-18's b=32 step took 17,700 page faults and 0.1-0.45 CPU-s of
system time, ``clear_page`` alone 7.5 % of its profile (benchmarks/README.md, "Measurements
behind the design").  Here freed results wait in the process for the next requests.

Segments and chunks.  The memory is held as *segments* (NumPy ``uint8`` blocks), each cut into
*chunks* that cover it in address order, in use or free.  A request takes the smallest free
chunk that is large enough and cuts it to size (its start stays on a ``ALIGN_BYTES`` boundary;
the rest stays free beside it); a chunk that comes back joins its free neighbours.  So a 98 MiB
gradient freed early in the backward pass serves four 24 MiB results later, and is whole again
when they are gone -- which reuse at one exact size cannot do: replaying one step's requests,
exact sizes needed 1.5x (ResNet-18) to 2x (AlexNet) the most ever in use before no request went
to fresh memory, and with the bound below they kept faulting 200-560 MB per step in.

The peak stays bounded.  Memory that waits is memory the process holds, so a request that finds
no free chunk large enough first frees whole segments with nothing in use, those free longest
first, until the segments add up to no more than the most that was ever in use at once -- what
the process would hold at its peak without recycling -- and only then takes a new segment.  When
free space is split across segments that are partly in use, no segment can go and the new one
takes the process past that bound; the segments that empty afterwards go back as they empty,
until the bound holds again.  (AlexNet b=64: one new 144 MiB segment for fc6's weight gradient in
each step, which lifts the process's peak from 1,542 to 1,672 MiB; ResNet-18 b=32 runs from one
set of segments, 8 page faults per step.)

How an array gives its memory back when its last view goes: each result is made through a
``ctypes`` array over its chunk (the *lease*): NumPy keeps the object it took the buffer from as
the base of the result, and every view of the result keeps the result, so the lease lives
exactly as long as some array can reach the memory, and a ``weakref.finalize`` on the lease
returns the chunk when it goes.  (A ``memoryview`` would not do: ``numpy.frombuffer`` takes a new
memoryview of the block beneath it, so the lease would go at once.)  Code that keeps only a raw
address (``arr.ctypes.data``) past the array's life would see the memory reused, as it would see
it freed without recycling.

Only NumPy results of at least ``MIN_BYTES`` are recycled: smaller ones come from glibc's heap,
which reuses them without page faults, and GPU arrays from CuPy's own memory pool.
``release_recycled_memory()`` frees every segment with nothing in use.
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
#: results start at multiples of this within a segment (a page: SIMD-aligned, and a freed part
#: merges with its neighbours without slivers)
ALIGN_BYTES = 4096

_enabled = [True]
_segments = []             # every segment, in the order it was allocated
_free_chunks = []          # the free chunks of every segment
_free_bytes = [0]
_held_bytes = [0]          # bytes of every segment: in use + waiting
_live_bytes = [0]          # bytes of recycled results in use (their chunks' sizes)
_peak_live_bytes = [0]     # the most ever in use at once
_clock = [0]               # counts frees: a fully free segment remembers when it became so
# re-entrant: a garbage collection inside a locked section may free a cycle that holds a result,
# whose finalizer then gives its chunk back from the same thread; it waits in _pending until the
# section that was interrupted has finished with the chunk lists
_lock = threading.RLock()
_busy = [0]
_pending = []


class _Segment:
    """One NumPy block, cut into chunks that cover it in address order."""
    __slots__ = ("block", "size", "chunks", "free_since")

    def __init__(self, block):
        self.block, self.size = block, block.nbytes
        self.chunks = [_Chunk(self, 0, self.size)]
        self.free_since = 0


class _Chunk:
    __slots__ = ("segment", "offset", "size", "free")

    def __init__(self, segment, offset, size):
        self.segment, self.offset, self.size, self.free = segment, offset, size, True


def _reset_lock_after_fork():
    global _lock
    _lock = threading.RLock()
    _busy[0] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _release_segments(limit):
    """Free whole segments with no result in them, those free longest first, until at most
    ``limit`` bytes are held (under the lock)."""
    if _held_bytes[0] <= limit:
        return
    idle = sorted((segment for segment in _segments if len(segment.chunks) == 1 and segment.chunks[0].free),
                  key=lambda segment: segment.free_since)
    for segment in idle:
        if _held_bytes[0] <= limit:
            break
        _segments.remove(segment)
        _free_chunks.remove(segment.chunks[0])
        _free_bytes[0] -= segment.size
        _held_bytes[0] -= segment.size
        segment.chunks.clear()           # chunk <-> segment is a cycle: the block goes now, not at
        segment.block = None             # the next garbage collection


def _take(size):
    """The smallest free chunk of at least ``size`` bytes, cut to ``size``, or None (under the lock)."""
    best = None
    for chunk in _free_chunks:
        if chunk.size >= size and (best is None or chunk.size < best.size):
            best = chunk
            if chunk.size == size:
                break
    if best is None:
        return None
    if best.size > size:                         # the rest stays free, just after it
        rest = _Chunk(best.segment, best.offset + size, best.size - size)
        chunks = best.segment.chunks
        chunks.insert(chunks.index(best) + 1, rest)
        _free_chunks.append(rest)
        best.size = size
    best.free = False
    _free_chunks.remove(best)
    _free_bytes[0] -= size
    return best


def _merge(chunk):
    """Mark ``chunk`` free and join it with free neighbours (under the lock)."""
    chunk.free = True
    _free_bytes[0] += chunk.size
    chunks = chunk.segment.chunks
    index = chunks.index(chunk)
    if index + 1 < len(chunks) and chunks[index + 1].free:
        after = chunks.pop(index + 1)
        _free_chunks.remove(after)
        chunk.size += after.size
    if index > 0 and chunks[index - 1].free:
        before = chunks[index - 1]
        chunks.pop(index)
        before.size += chunk.size
        chunk = before
    else:
        _free_chunks.append(chunk)
    _clock[0] += 1
    chunk.segment.free_since = _clock[0]


def _finish_section():
    """Leave a locked section: give back the chunks whose results went meanwhile (under the lock)."""
    while _pending:
        _merge(_pending.pop())
    # a request that found no free chunk large enough may have taken a segment past the bound:
    # segments that empty since go back, longest free first
    _release_segments(min(max(_peak_live_bytes[0], _live_bytes[0]), _live_bytes[0] + MAX_FREE_BYTES))
    _busy[0] -= 1


def _give_back(chunk):
    with _lock:
        _live_bytes[0] -= chunk.size
        _pending.append(chunk)
        if _busy[0]:                 # a section of this thread was interrupted: it finishes the job
            return
        _busy[0] += 1
        _finish_section()


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
    size_in_segment = -(-size // ALIGN_BYTES) * ALIGN_BYTES
    with _lock:
        _busy[0] += 1
        try:
            chunk = _take(size_in_segment)
            _live_bytes[0] += size_in_segment
            _peak_live_bytes[0] = max(_peak_live_bytes[0], _live_bytes[0])
            if chunk is None:
                # held (in use + waiting) <= the most ever in use, with the new segment (the docstring)
                _release_segments(_peak_live_bytes[0] - size_in_segment)
                try:
                    segment = _Segment(numpy.empty(size_in_segment, dtype=numpy.uint8))
                except BaseException:
                    _live_bytes[0] -= size_in_segment           # nothing was handed out
                    raise
                _segments.append(segment)
                _held_bytes[0] += segment.size
                chunk = segment.chunks[0]
                chunk.free = False
        finally:
            _finish_section()
    lease = (ctypes.c_char * size).from_buffer(chunk.segment.block, chunk.offset)
    weakref.finalize(lease, _give_back, chunk).atexit = False
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
    """Free every segment with no result in it (the arrays in use keep theirs), and count the peak
    in use afresh from what is in use now."""
    with _lock:
        _busy[0] += 1
        try:
            _release_segments(0)
            _peak_live_bytes[0] = _live_bytes[0]
        finally:
            _finish_section()


def recycled_bytes():
    """Bytes waiting for reuse."""
    return _free_bytes[0]
