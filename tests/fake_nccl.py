"""Stand-ins for ``cupy.cuda.nccl`` and the stream/event part of ``cupy.cuda``, for testing the
NCCL path of tinynet.distributed without a GPU.

``FakeNccl(group)`` behaves like the module: ``get_unique_id()``, ``NcclCommunicator(n, id, rank)``
and the ``NCCL_*`` constants.  Its communicator's ``allReduce(send, recv, count, dtype, op,
stream)`` reads ``count`` elements of ``dtype`` at the raw addresses it is given (the
NumPy-backed CuPy stand-in keeps "GPU" arrays in host memory) and sums them over the
group's MPI communicator -- so a wrong pointer, count or dtype gives wrong numbers, as NCCL
would.  It also checks what only a real GPU would otherwise catch: every rank built its
communicator from the same unique id, with the right rank and size, and the allreduce
was issued on the communicator's own stream *after* that stream was told to wait for the
compute stream (else NCCL could read gradients still being written).

Not imitated: real asynchrony (streams run everything at once here), NCCL's ring and
network transport, device memory, CUDA error reporting.
"""
import ctypes
import os

import numpy as np

_CTYPES = {0: ctypes.c_uint16, 1: ctypes.c_float, 2: ctypes.c_double}
_NUMPY = {0: np.float16, 1: np.float32, 2: np.float64}


class FakeEvent:
    def __init__(self):
        self.recorded_on = None

    def record(self, stream):
        self.recorded_on = stream

    @property
    def done(self):
        return self.recorded_on is not None


class FakeStream:
    _next_pointer = 0x1000
    registry = {}

    def __init__(self, non_blocking=False, name="side stream"):
        self.ptr = FakeStream._next_pointer
        FakeStream._next_pointer += 0x10
        FakeStream.registry[self.ptr] = self
        self.name = name
        self.waited_for = []
        self.collectives = 0

    def wait_event(self, event):
        if event.recorded_on is None:
            raise AssertionError("wait_event on an event that was never recorded")
        self.waited_for.append(event)


class FakeCuda:
    """``Stream``, ``Event`` and ``get_current_stream`` of ``cupy.cuda``, all synchronous."""

    def __init__(self):
        self.compute_stream = FakeStream(name="compute stream")
        self.Event = FakeEvent

    def Stream(self, non_blocking=False):  # noqa: N802 - CuPy's name
        return FakeStream(non_blocking)

    def get_current_stream(self):
        return self.compute_stream


class FakeNccl:
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 0, 1, 2
    NCCL_SUM = 0

    def __init__(self, group):
        self.group = group
        self.calls = []
        fake = self

        class NcclCommunicator:
            def __init__(self, ndev, unique_id, rank):
                from mpi4py import MPI
                if (ndev, rank) != (group.world_size, group.rank):
                    raise AssertionError(f"NcclCommunicator({ndev}, id, {rank}) on rank {group.rank} of "
                                         f"{group.world_size}")
                ids = group.comm.allgather(tuple(unique_id))
                if len(set(ids)) != 1:
                    raise AssertionError("ranks built their NCCL communicators from different unique ids")
                self._MPI = MPI
                self.stream_checks = []

            def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):  # noqa: N802
                if op != FakeNccl.NCCL_SUM:
                    raise AssertionError(f"allReduce with op {op}, expected NCCL_SUM")
                fake.calls.append((sendbuf, recvbuf, count, datatype, stream))
                fake.check_stream(stream)
                ctype = _CTYPES[datatype]
                send = np.ctypeslib.as_array(ctypes.cast(sendbuf, ctypes.POINTER(ctype)), shape=(count,))
                recv = np.ctypeslib.as_array(ctypes.cast(recvbuf, ctypes.POINTER(ctype)), shape=(count,))
                values = send.view(_NUMPY[datatype]).copy()
                group.comm.Allreduce(self._MPI.IN_PLACE, values, op=self._MPI.SUM)
                recv.view(_NUMPY[datatype])[...] = values

            def abort(self):
                pass

        self.NcclCommunicator = NcclCommunicator
        self.streams = {}

    def check_stream(self, stream_pointer):
        """Each allreduce must go on a side stream that waited for the compute stream just before."""
        stream = FakeStream.registry.get(stream_pointer)
        if stream is None or stream.name == "compute stream":
            raise AssertionError("allReduce must run on a stream of its own, not the compute stream")
        stream.collectives += 1
        waits_on_compute = [e for e in stream.waited_for if e.recorded_on.name == "compute stream"]
        if len(waits_on_compute) < stream.collectives:
            raise AssertionError("allReduce issued before its stream waited for the compute stream")

    @staticmethod
    def get_unique_id():
        return tuple(os.urandom(128))
