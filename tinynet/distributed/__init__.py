"""tinynet.distributed: data-parallel training over MPI processes (CPUs) and NCCL (GPUs).

Start the same script once per process with an MPI launcher::

    mpiexec -n 4 python train.py            # 4 ranks on this machine
    mpiexec -f hosts -n 8 python train.py   # 8 ranks over the machines listed in hosts

and in the script::

    from tinynet import distributed as dist
    group = dist.init()                     # world size 1 without mpiexec: no MPI needed
    model = dist.DistributedDataParallel(model)
    loader = DistributedDataLoader(dataset, batch_size=b, shuffle=True, seed=0)
    ...
    if dist.is_main_process(): print(...)

Everything here also runs in one plain process (rank 0 of world size 1), so the same
script serves both.  See docs/data-parallel.md for why averaging the gradients of N
shards equals one big batch, and what it costs.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

from .. import backend
from .runtime import (DEFAULT_TIMEOUT, DistributedTimeoutError, MPIProcessGroup, ProcessGroup,
                      SingleProcessGroup, launched_by_mpi, timeout_from_environment)
from .ddp import DistributedDataParallel, GradientReducer, assign_buckets

__all__ = ["init", "get_group", "is_initialized", "rank", "world_size", "local_rank", "is_main_process",
           "use_local_gpu", "barrier", "all_reduce", "broadcast_object", "print0", "main_process_only", "save_checkpoint",
           "DistributedDataParallel", "GradientReducer", "assign_buckets", "ProcessGroup",
           "SingleProcessGroup", "MPIProcessGroup", "DistributedTimeoutError", "launched_by_mpi",
           "DEFAULT_TIMEOUT"]

_group = None


def init(backend="auto", timeout=None):
    """Set up (once) and return the process group of this run.

    ``backend``: ``'auto'`` (MPI when an MPI launcher started this process, else one
    process), ``'mpi'`` (always MPI; a plain ``python`` start is then an MPI singleton of
    world size 1) or ``'single'``.  ``timeout`` bounds every wait on other ranks, in
    seconds (default ``TINYNET_DISTRIBUTED_TIMEOUT`` or 600).  A second call returns the
    same group.
    """
    global _group
    if _group is not None:
        return _group
    if backend not in ("auto", "mpi", "single"):
        raise ValueError(f"distributed backend must be 'auto', 'mpi' or 'single', got {backend!r}")
    timeout = timeout_from_environment() if timeout is None else float(timeout)
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if backend == "mpi" or (backend == "auto" and launched_by_mpi()):
        _group = MPIProcessGroup(timeout=timeout)
    else:
        _group = SingleProcessGroup(timeout=timeout)
    return _group


def get_group():
    """The group from :func:`init` (which this calls, with its defaults, if nobody did)."""
    return _group if _group is not None else init()


def is_initialized() -> bool:
    return _group is not None


def rank() -> int:
    return get_group().rank


def world_size() -> int:
    return get_group().world_size


def local_rank() -> int:
    """This process's index among the ranks on its machine (which GPU to use)."""
    return get_group().local_rank


def use_local_gpu() -> int:
    """Make GPU ``local_rank() % device count`` this process's current device and return its index.

    One rank per GPU: ``mpiexec -n 4`` on a 4-GPU machine gives each rank its own. Call it
    before moving the model to ``'gpu'``.
    """
    xp = backend.gpu_module()
    if xp is None:
        raise RuntimeError("use_local_gpu: no GPU backend (CuPy is not installed, or there is no driver)")
    count = xp.cuda.runtime.getDeviceCount()
    if count < 1:
        raise RuntimeError("use_local_gpu: CuPy sees no GPU")
    index = local_rank() % count
    xp.cuda.Device(index).use()
    return index


def is_main_process() -> bool:
    """Rank 0: the one that prints, writes metrics and checkpoints."""
    return get_group().rank == 0


def barrier(description="Barrier"):
    get_group().barrier(description)


def all_reduce(values, description="Allreduce"):
    """The sum over all ranks of ``values`` (numbers or an array; a new NumPy array is returned).

    For small things such as the correct/total counts of a sharded validation; gradients go
    through :class:`DistributedDataParallel`.
    """
    array = np.array(backend.to_numpy(values) if backend.is_gpu_array(values) else values)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"all_reduce sums numbers; got dtype {array.dtype}")
    array = np.ascontiguousarray(array)
    return get_group().allreduce(array, description)


def broadcast_object(obj, root=0, description="broadcast of a Python object"):
    return get_group().broadcast_object(obj, root, description)


def main_process_only(function):
    """Decorator: run ``function`` on rank 0 only (other ranks get ``None``)."""
    @functools.wraps(function)
    def run_on_rank_0(*args, **kwargs):
        if is_main_process():
            return function(*args, **kwargs)
        return None
    return run_on_rank_0


def print0(*args, **kwargs):
    """``print`` on rank 0 only."""
    if is_main_process():
        kwargs.setdefault("file", sys.stdout)
        print(*args, **kwargs)


def save_checkpoint(obj, path):
    """Rank 0 writes ``obj`` to ``path`` with :func:`tinynet.save` (atomic: a temporary file renamed
    over the target), then every rank waits until it is on disk, so that a rank may read it
    right after.  The other ranks write nothing."""
    from ..checkpoint import save
    if is_main_process():
        save(obj, path)
    barrier(f"barrier after writing the checkpoint {path}")
