"""numba set-up shared by the kernels: a writable cache, the CPU threads, the CUDA module.

``@njit(cache=True)`` writes compiled machine code next to the source file, and
numba raises at import time when that folder is read-only (a system-wide install,
a read-only checkout).  Before numba is first imported we check that, and point
``NUMBA_CACHE_DIR`` at a per-user cache folder instead of crashing.
"""
import os
import tempfile


def _choose_cache_dir():
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(here, "__pycache__")
    probe = pycache if os.path.isdir(pycache) else here
    if os.access(probe, os.W_OK):
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for candidate in (os.path.join(base, "tinynet", "numba"),
                      os.path.join(tempfile.gettempdir(), "tinynet-numba-cache")):
        try:
            os.makedirs(candidate, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = candidate
            return


_choose_cache_dir()

import itertools  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402

import numba  # noqa: E402  (must come after the cache folder is settled)
from numba import cuda, njit, uint64  # noqa: E402,F401

from tinynet import backend  # noqa: E402

# ----------------------------------------------------------------- CPU tasks on tinynet's threads
# Every CPU kernel is a serial numba function over a range of independent tasks (``first``,
# ``last`` are its last two arguments), compiled with ``nogil=True``, and ``parallel_tasks``
# hands consecutive ranges to a pool of Python threads.  Against ``parallel=True`` + ``prange``:
#
# * compiling costs about a third (no parfor passes, no gufunc wrapper): the kernels of AlexNet's
#   first training step took 13.3 CPU-s to compile with prange, 4.8 in this form (benchmarks/README.md);
# * numba's threading layer (a second GNU OpenMP runtime beside PyTorch's, or TBB, or its
#   workqueue) is never started, so nothing spins between kernels and nothing needs
#   OMP_WAIT_POLICY: idle pool threads block on their job queue;
# * the threads survive ``fork`` (the pool is rebuilt in the child), which GNU OpenMP does not.
#
# Each task writes only its own outputs, so how the ranges are split never changes a result:
# the same bits on 1 thread or 8.

# Loops that vectorise: numba reads ``a[i]`` with a signed ``i`` as ``a[i + len(a)]`` when ``i < 0``
# (Python's negative indices).  In ``for i in range(first, last)`` LLVM cannot rule that out, so the
# check stays in the loop and keeps it scalar; in ``for i in range(n)`` it can, and the loop runs
# as SIMD.  So an elementwise task slices its range, ``a = a[first:last]``, and counts from 0:
# ReLU's backward ran 5x faster so (54 -> 11 ms on 25.7 M floats, one thread), the SGD step 4.8x.
# Where an index is computed (``a[row * width + k]``), an unsigned one (``uint64``) has no negative
# case to check either: im2col's row copies index so.
#
#: ranges per thread: a few, so that a thread slowed by other work on its core hands its share
#: to the others (dynamic scheduling), while each range stays long enough to amortise the
#: ~10 us of a numba call from Python
RANGES_PER_THREAD = 4

#: elements per range, at least, for the elementwise kernels (ReLU, BatchNorm's passes, the SGD
#: step): handing ranges to a sleeping pool thread costs 20-40 us (waking it, then the GIL), as
#: long as one thread takes for a quarter to a half of a million float32 elements.  On the 2-vCPU
#: AMD EPYC of benchmarks/README.md ReLU's backward took, on one thread against two, 37 / 48 us at
#: 256 K elements, 72 / 63 at 512 K, 163 / 123 at 1 M, 469 / 285 at 2 M; inside a network, where
#: the other thread has gone to sleep, a second thread paid later still.  It joins from 1 M.
ELEMENTWISE_GRAIN = 1 << 19


def grain_for(elements_per_task):
    """``grain`` for :func:`parallel_tasks` when each task is an elementwise pass over
    ``elements_per_task`` elements: ranges of at least ``ELEMENTWISE_GRAIN`` elements."""
    return max(1, -(-ELEMENTWISE_GRAIN // max(int(elements_per_task), 1)))

class _Workers:
    """Daemon threads that run the callables put on one queue, started as they are first needed.

    A ``queue.SimpleQueue`` (C code) hands a job over in a few microseconds; the call's other
    synchronisation is two C-level primitives as well (a counter under the GIL, a lock released by
    the range that finishes last), because on 2 cores each microsecond of Python between the
    caller's kernel call and its return is a microsecond of every small kernel.
    """

    def __init__(self):
        self.jobs = queue.SimpleQueue()
        self.count = 0
        self.lock = threading.Lock()

    def ensure(self, count):
        if self.count >= count:
            return
        with self.lock:
            while self.count < count:
                threading.Thread(target=self._serve, name=f"tinynet-kernel-{self.count}", daemon=True).start()
                self.count += 1

    def _serve(self):
        while True:
            self.jobs.get()()


_workers = _Workers()


def _forget_workers_after_fork():
    global _workers
    _workers = _Workers()       # the parent's threads do not exist in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def parallel_tasks(kernel, tasks, *arguments, grain=1):
    """``kernel(*arguments, first, last)`` over ranges that cover ``range(tasks)``, on the CPU threads.

    ``kernel``: a numba function compiled with ``nogil=True``, or a Python function whose work
    releases the GIL (NumPy's ``matmul``: ``_gemm_stack.py``).
    ``grain``: the fewest tasks worth a range of their own (elementwise kernels pass thousands).
    The calling thread takes ranges too; it returns when every range is done, and re-raises the
    first error a range raised.
    """
    tasks = int(tasks)
    if tasks <= 0:
        return
    wait_for_warm_up(kernel)
    grain = max(int(grain), 1)
    threads = min(backend.get_num_threads(), tasks // grain)
    if threads <= 1:
        kernel(*arguments, 0, tasks)
        return
    ranges = min(tasks // grain, threads * RANGES_PER_THREAD)
    bounds = [tasks * i // ranges for i in range(ranges + 1)]
    claim = itertools.count().__next__      # atomic under the GIL
    finish = itertools.count(1).__next__
    errors = []
    done = threading.Lock()
    done.acquire()                          # released by whichever thread finishes the last range

    def work():
        while True:
            index = claim()
            if index >= ranges:
                return
            try:
                kernel(*arguments, bounds[index], bounds[index + 1])
            except BaseException as error:  # noqa: B036  (re-raised in the calling thread)
                errors.append(error)
            if finish() == ranges:
                done.release()

    workers = _workers
    workers.ensure(threads - 1)
    for _ in range(threads - 1):
        workers.jobs.put(work)
    work()
    done.acquire()
    if errors:
        raise errors[0]


# ----------------------------------------------------------------- compiling ahead (_warm_up.py)
_warm_up_hook = None


def wait_for_warm_up(kernel):
    """Before a kernel's first call: if a warm-up process is compiling it, wait for its cache entry."""
    # a numba dispatcher's ``overloads`` is empty until it has compiled; Python functions have none
    if _warm_up_hook is not None and not getattr(kernel, "overloads", True):
        _warm_up_hook(kernel)


#: threads per CUDA block for the one-thread-per-element kernels
THREADS_PER_BLOCK = 256


def blocks_for(n_items: int, threads: int = THREADS_PER_BLOCK) -> int:
    """How many blocks of ``threads`` cover ``n_items`` (at least one)."""
    return max(1, (int(n_items) + threads - 1) // threads)


def simulating_cuda() -> bool:
    """True under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return bool(numba.config.ENABLE_CUDASIM)
