"""The process group: who am I (rank), how many are we (world size), and how we talk (MPI).

``init()`` reads the MPI environment that ``mpiexec`` sets up (through mpi4py).  A
script started without ``mpiexec`` gets the single-process group instead: rank 0 of
world size 1, every collective a no-op, and mpi4py is never imported, so every script
and test runs on a machine without MPI.

Fault handling.  MPI collectives block until every rank has joined, so one rank that
raises or dies could leave the others waiting forever.  Two guards bound that time:

* an uncaught exception on any rank prints its traceback and calls ``MPI_Abort``,
  which makes ``mpiexec`` end every rank at once (a rank killed by a signal is noticed
  by ``mpiexec`` itself, which then ends the others);
* every wait in this package polls a non-blocking request against a deadline
  (``timeout``, default 600 s, or ``TINYNET_DISTRIBUTED_TIMEOUT``): a rank that left
  silently (``sys.exit``, ``os._exit``) or hangs makes the others abort with a message
  naming the operation they waited for, instead of spinning forever.
"""
from __future__ import annotations

import os
import pickle
import sys
import threading
import time

import numpy as np

__all__ = ["ProcessGroup", "SingleProcessGroup", "MPIProcessGroup", "DistributedTimeoutError",
           "launched_by_mpi", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 600.0

# Variables that the common launchers set in every process they start: MPICH's hydra
# (PMI_*), Open MPI (OMPI_COMM_WORLD_*), PMIx-based launchers and Slurm's srun with PMI.
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                       "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID")


def launched_by_mpi(environ=None) -> bool:
    """Whether this process was started by an MPI launcher (``mpiexec``/``mpirun``/``srun``)."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in _LAUNCHER_VARIABLES)


def timeout_from_environment(default=DEFAULT_TIMEOUT) -> float:
    value = os.environ.get("TINYNET_DISTRIBUTED_TIMEOUT")
    if value is None:
        return float(default)
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"TINYNET_DISTRIBUTED_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"TINYNET_DISTRIBUTED_TIMEOUT must be > 0 seconds, got {value!r}")
    return seconds


class DistributedTimeoutError(RuntimeError):
    """A collective operation did not complete within the group's timeout."""


class _DoneWork:
    """The handle of an operation that completed when it was started (world size 1)."""

    def test(self):
        return True

    def wait(self, what="operation"):
        return None


class ProcessGroup:
    """What every group offers; the data-parallel code speaks only this."""

    rank = 0
    world_size = 1
    local_rank = 0
    local_world_size = 1
    timeout = DEFAULT_TIMEOUT
    backend = "single"

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    # Collectives on NumPy arrays, in place.  Each returns only once every rank has joined,
    # or aborts the job after ``timeout`` seconds.
    def allreduce_start(self, array, description="Allreduce"):  # pragma: no cover - interface
        raise NotImplementedError

    def allreduce(self, array, description="Allreduce"):
        self.allreduce_start(array, description).wait(description)
        return array

    def broadcast(self, array, root=0, description="Bcast"):
        raise NotImplementedError  # pragma: no cover - interface

    def broadcast_object(self, obj, root=0, description="broadcast of a Python object"):
        raise NotImplementedError  # pragma: no cover - interface

    def barrier(self, description="Barrier"):
        raise NotImplementedError  # pragma: no cover - interface

    def progress(self):
        """Let pending non-blocking operations advance (MPI progresses them only inside MPI calls)."""

    def abort(self, message, code=1):
        raise NotImplementedError  # pragma: no cover - interface


class SingleProcessGroup(ProcessGroup):
    """World size 1: every collective returns its input unchanged, no MPI involved."""

    backend = "single"

    def __init__(self, timeout=DEFAULT_TIMEOUT):
        self.timeout = float(timeout)

    def allreduce_start(self, array, description="Allreduce"):
        return _DoneWork()

    def broadcast(self, array, root=0, description="Bcast"):
        _check_root(root, 1)
        return array

    def broadcast_object(self, obj, root=0, description="broadcast of a Python object"):
        _check_root(root, 1)
        return obj

    def barrier(self, description="Barrier"):
        return None

    def abort(self, message, code=1):
        sys.stderr.write(f"tinynet.distributed: {message}\n")
        sys.stderr.flush()
        os._exit(code)

    def __repr__(self):
        return "SingleProcessGroup(rank=0, world_size=1)"


def _check_root(root, world_size):
    if not 0 <= int(root) < world_size:
        raise ValueError(f"root must be a rank in 0..{world_size - 1}, got {root}")


class _MPIWork:
    """A pending MPI request; ``wait`` polls it against the group's deadline."""

    def __init__(self, group, requests):
        self.group = group
        self.requests = list(requests)
        self.done = False

    def _poll(self):
        """One Testall; the caller holds the group's lock (two threads must not complete one request)."""
        if not self.done and self.group._MPI.Request.Testall(self.requests):
            self.done = True
        return self.done

    def test(self):
        with self.group._lock:
            return self._poll()

    def wait(self, what="operation"):
        if not self.done:
            self.group._wait_requests(self.requests, what)
            self.done = True


class MPIProcessGroup(ProcessGroup):
    """The ranks of an MPI communicator (``MPI.COMM_WORLD`` by default)."""

    backend = "mpi"

    def __init__(self, comm=None, timeout=DEFAULT_TIMEOUT, install_excepthook=True):
        try:
            from mpi4py import MPI
        except ImportError as error:  # launched by mpiexec, but without mpi4py
            raise ImportError(
                "tinynet.distributed: this process was started by an MPI launcher but mpi4py is not "
                "installed; install the MPI extra: pip install -e \".[mpi]\"") from error
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        # ranks that share this machine (and its memory): local_rank picks the GPU
        self.node_comm = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.node_comm.Get_rank()
        self.local_world_size = self.node_comm.Get_size()
        self.timeout = float(timeout)
        self._pending = []
        self._lock = threading.Lock()
        # MPICH moves a non-blocking collective forward only inside MPI calls.  The gradient hooks
        # poll in-flight buckets (progress()); TINYNET_MPI_PROGRESS_THREAD=1 adds a thread that polls
        # every half millisecond (needs MPI_THREAD_MULTIPLE, mpi4py's default).  Off by default: on
        # the 2-core test machine it hid no more of the Allreduce than the hooks' polling did
        # (benchmarks/distributed.py, docs/data-parallel.md) and costs a thread per rank.
        self.progress_thread = (os.environ.get("TINYNET_MPI_PROGRESS_THREAD", "0") == "1"
                                and MPI.Query_thread() == MPI.THREAD_MULTIPLE)
        self.progress_interval = 5e-4
        self._progress_worker = None
        if install_excepthook and self.world_size > 1:
            self._install_excepthook()

    # -------------------------------------------------------------- faults
    def _install_excepthook(self):
        previous = sys.excepthook

        def abort_all_ranks(exc_type, exc, tb):
            previous(exc_type, exc, tb)   # the traceback first, as without MPI
            self.abort(f"rank {self.rank} of {self.world_size} raised {exc_type.__name__}: {exc}; "
                       f"aborting all ranks (MPI_Abort) so that none waits for it")

        sys.excepthook = abort_all_ranks

    def abort(self, message, code=1):
        sys.stderr.write(f"tinynet.distributed: {message}\n")
        sys.stderr.flush()
        # mpiexec forwards each rank's output asynchronously, and Abort tears the job down at once:
        # without a moment's grace the traceback above can arrive cut to its first line
        time.sleep(0.5)
        self.comm.Abort(code)

    def _wait_requests(self, requests, what):
        """Complete ``requests`` or abort the job after ``timeout`` seconds.

        MPI's own blocking wait would spin at full speed forever if a peer vanished;
        polling with a short sleep bounds the wait and leaves the cores to other work.
        """
        MPI = self._MPI
        deadline = time.monotonic() + self.timeout
        pause = 2e-5

        def completed():
            with self._lock:
                return MPI.Request.Testall(requests)

        while not completed():
            if time.monotonic() > deadline:
                self.abort(f"rank {self.rank} of {self.world_size}: {what} did not complete within "
                           f"{self.timeout:g} s (TINYNET_DISTRIBUTED_TIMEOUT); another rank has probably "
                           f"died, exited early or hangs; aborting all ranks")
                raise DistributedTimeoutError(what)  # only reached if Abort returned
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    # -------------------------------------------------------------- collectives
    def allreduce_start(self, array, description="Allreduce"):
        """Start summing ``array`` (a contiguous NumPy array) over all ranks, in place."""
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable):
            raise TypeError("allreduce needs a writeable C-contiguous NumPy array (GPU arrays go through "
                            "tinynet.distributed.gpu)")
        with self._lock:
            request = self.comm.Iallreduce(self._MPI.IN_PLACE, array.reshape(-1), op=self._MPI.SUM)
            work = _MPIWork(self, [request])
            self._pending = [w for w in self._pending if not w.done] + [work]
            if self.progress_thread and self._progress_worker is None:
                self._progress_worker = threading.Thread(target=self._progress_loop, daemon=True,
                                                         name="tinynet-mpi-progress")
                self._progress_worker.start()
        return work

    def progress(self):
        with self._lock:
            self._pending = [w for w in self._pending if not w._poll()]

    def _progress_loop(self):
        while True:
            with self._lock:
                self._pending = [w for w in self._pending if not w._poll()]
                if not self._pending:
                    self._progress_worker = None
                    return
            time.sleep(self.progress_interval)

    def broadcast(self, array, root=0, description="Bcast"):
        _check_root(root, self.world_size)
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable):
            raise TypeError("broadcast needs a writeable C-contiguous NumPy array")
        with self._lock:
            request = self.comm.Ibcast(array.reshape(-1), root=root)
        self._wait_requests([request], description)
        return array

    def broadcast_object(self, obj, root=0, description="broadcast of a Python object"):
        """``obj`` from ``root`` on every rank (pickled: only between this job's own ranks)."""
        _check_root(root, self.world_size)
        payload = pickle.dumps(obj) if self.rank == root else b""
        size = np.array([len(payload)], dtype=np.int64)
        self.broadcast(size, root, description + " (size)")
        buffer = np.frombuffer(payload, dtype=np.uint8).copy() if self.rank == root else \
            np.empty(int(size[0]), dtype=np.uint8)
        self.broadcast(buffer, root, description)
        return obj if self.rank == root else pickle.loads(buffer.tobytes())

    def barrier(self, description="Barrier"):
        with self._lock:
            request = self.comm.Ibarrier()
        self._wait_requests([request], description)

    def __repr__(self):
        return (f"MPIProcessGroup(rank={self.rank}, world_size={self.world_size}, "
                f"local_rank={self.local_rank})")
