"""Reusable CPU scratch memory for the convolution kernels, and the size of their chunks of images.

A convolution's temporaries (im2col's columns, Winograd's transformed tiles, the
GEMM products) are tens to hundreds of megabytes.  Allocating them fresh on every
call costs page faults that are as slow as the memory-bound passes that fill
them, so each thread keeps one buffer per named slot, which only grows, and hands
out views into it.  Results returned to callers never live in scratch memory.
Two kernels may share a slot name (im2col's "columns" and Winograd's transformed
input): they run one after the other, and sharing keeps the peak memory down.
"""
import threading

import numpy

_buffers_per_thread = threading.local()


def scratch(slot, shape, dtype):
    """An uninitialised C-contiguous NumPy array of ``shape`` and ``dtype``, valid until the next
    ``scratch`` call for the same ``slot`` on this thread."""
    dtype = numpy.dtype(dtype)
    size = 1
    for extent in shape:
        size *= int(extent)
    buffers = getattr(_buffers_per_thread, "buffers", None)
    if buffers is None:
        buffers = _buffers_per_thread.buffers = {}
    buffer = buffers.get(slot)
    if buffer is None or buffer.nbytes < size * dtype.itemsize:
        buffers[slot] = None                       # free the old buffer before growing
        buffer = buffers[slot] = numpy.empty(size * dtype.itemsize, dtype=numpy.uint8)
    return buffer[:size * dtype.itemsize].view(dtype).reshape(shape)


def release_scratch_memory():
    """Free this thread's scratch buffers (they are rebuilt on the next call)."""
    _buffers_per_thread.buffers = {}


def scratch_bytes():
    """Bytes of scratch memory this thread holds (reported by the memory benchmark)."""
    buffers = getattr(_buffers_per_thread, "buffers", None) or {}
    return int(sum(buffer.nbytes for buffer in buffers.values() if buffer is not None))


#: the size a chunk of images' temporaries aims at: im2col's columns, or Winograd's transformed
#: tiles (see conv2d.py, "Memory", for how 128 MiB was chosen)
CHUNK_BYTES = 128 << 20


def images_per_chunk(batch, bytes_per_image):
    """How many of ``batch`` images to process together so that their temporaries fill about
    :data:`CHUNK_BYTES` (at least one image, at most the whole batch)."""
    return max(1, min(batch, CHUNK_BYTES // max(1, bytes_per_image)))
