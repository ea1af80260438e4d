"""Allreduce of gradients that live on the GPU: NCCL through CuPy, or staged through host memory.

NCCL (``cupy.cuda.nccl``) sums GPU buffers directly, over NVLink/PCIe inside a machine and
over the network between machines.  Its communicator is set up from a *unique id* that rank 0
draws and every rank must receive, so the id is broadcast over MPI (the group from
``tinynet.distributed.init``); after that MPI is not on the GPU path at all.

NCCL kernels run on their own CUDA stream so that they overlap the backward kernels still
running on the compute stream: a CUDA event recorded on the compute stream after a bucket's
gradients were copied in makes the NCCL stream wait for exactly that point, and a second
event recorded after the allreduce tells the host when the bucket is done.

The MPI wheels on the package index are not CUDA-aware (they cannot read GPU pointers), so
without NCCL a bucket is copied to host memory, summed with MPI, and copied back.
"""
from __future__ import annotations

import importlib
import time

import numpy as np

from .. import backend

__all__ = ["NcclAllreduce", "HostStagedAllreduce", "gpu_allreduce_for", "device_pointer"]


def device_pointer(array) -> int:
    """The device address of ``array``'s first element, from the CUDA array interface (which
    CuPy's arrays and the tests' CuPy stand-in both offer)."""
    interface = array.__cuda_array_interface__
    if interface.get("strides") is not None and not array.flags["C_CONTIGUOUS"]:
        raise ValueError("NCCL needs a contiguous buffer")
    return int(interface["data"][0])


class HostStagedAllreduce:
    """GPU bucket -> host copy -> MPI Iallreduce -> copied back into the bucket at ``wait``."""

    name = "host-staged MPI"

    def __init__(self, group):
        self.group = group

    def start(self, flat, description):
        host = np.ascontiguousarray(backend.to_numpy(flat))   # waits for the copies into the bucket
        if not host.flags.writeable:
            host = host.copy()
        return _StagedWork(self.group.allreduce_start(host, description), host, flat)


class _StagedWork:
    """The host Allreduce of a staged bucket; completing it copies the sums back to the device."""

    def __init__(self, host_work, host, flat):
        self.host_work, self.host, self.flat = host_work, host, flat
        self.done = False

    def test(self):
        if not self.done and self.host_work.test():
            self._copy_back()
        return self.done

    def wait(self, what=None):
        if not self.done:
            self.host_work.wait(what)
            self._copy_back()

    def _copy_back(self):
        self.flat[...] = backend.get_array_module(self.flat).asarray(self.host)
        self.done = True


class _NcclWork:
    def __init__(self, owner, done_event, description):
        self.owner = owner
        self.done_event = done_event
        self.description = description
        self.done = False

    def test(self):
        if not self.done and self.done_event.done:
            self._complete()
        return self.done

    def _complete(self):
        self.done = True
        # later kernels on the compute stream (the division by N, the optimizer step) run after it
        self.owner.cuda.get_current_stream().wait_event(self.done_event)

    def wait(self, what=None):
        """Poll the event against the group's deadline: a dead peer never completes an NCCL
        kernel, so an unbounded ``synchronize()`` would hang this rank for good."""
        if self.done:
            return
        group = self.owner.group
        deadline = time.monotonic() + group.timeout
        pause = 2e-5
        while not self.done_event.done:
            if time.monotonic() > deadline:
                self.owner.abort_communicator()
                group.abort(f"rank {group.rank} of {group.world_size}: {what or self.description} (NCCL) did "
                            f"not complete within {group.timeout:g} s; another rank has probably died or "
                            f"hangs; aborting all ranks")
                return
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)
        self._complete()


_NCCL_TYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


class NcclAllreduce:
    """Sum GPU buffers over the ranks of ``group`` with NCCL, on a stream of its own.

    ``nccl`` and ``cuda`` default to ``cupy.cuda.nccl`` and the backend's ``cupy.cuda``; the
    tests pass stand-ins for both (there is no GPU on the test machines).
    """

    name = "NCCL"

    def __init__(self, group, nccl=None, cuda=None):
        if nccl is None:
            nccl = importlib.import_module("cupy.cuda.nccl")
            if not getattr(nccl, "available", True):
                raise ImportError("cupy.cuda.nccl is present but NCCL is not loaded: "
                                  "pip install nvidia-nccl-cu13 (the gpu-distributed extra)")
        if cuda is None:
            cuda = backend.gpu_module().cuda
        self.group, self.nccl, self.cuda = group, nccl, cuda
        unique_id = nccl.get_unique_id() if group.rank == 0 else None
        unique_id = group.broadcast_object(unique_id, 0, "broadcast of the NCCL unique id")
        self.comm = nccl.NcclCommunicator(group.world_size, unique_id, group.rank)
        self.stream = cuda.Stream(non_blocking=True)

    def start(self, flat, description):
        try:
            nccl_type = getattr(self.nccl, _NCCL_TYPES[str(flat.dtype)])
        except KeyError:
            raise TypeError(f"NCCL allreduce: unsupported gradient dtype {flat.dtype}; "
                            f"expected one of {sorted(_NCCL_TYPES)}") from None
        gradients_copied = self.cuda.Event()
        gradients_copied.record(self.cuda.get_current_stream())
        self.stream.wait_event(gradients_copied)
        pointer = device_pointer(flat)
        self.comm.allReduce(pointer, pointer, int(flat.size), nccl_type, self.nccl.NCCL_SUM, self.stream.ptr)
        reduced = self.cuda.Event()
        reduced.record(self.stream)
        return _NcclWork(self, reduced, description)

    def abort_communicator(self):
        abort = getattr(self.comm, "abort", None)
        if abort is not None:
            abort()


def gpu_allreduce_for(group, prefer="auto", nccl=None, cuda=None):
    """The GPU allreduce to use: ``'nccl'``, ``'host'`` (staged through MPI), or ``'auto'``
    (NCCL when ``cupy.cuda.nccl`` loads, else host-staged)."""
    if prefer not in ("auto", "nccl", "host"):
        raise ValueError(f"gpu_allreduce must be 'auto', 'nccl' or 'host', got {prefer!r}")
    if prefer == "host":
        return HostStagedAllreduce(group)
    if prefer == "nccl" or nccl is not None:
        return NcclAllreduce(group, nccl=nccl, cuda=cuda)
    try:
        return NcclAllreduce(group)
    except ImportError:
        return HostStagedAllreduce(group)
