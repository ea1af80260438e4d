"""numba set-up shared by the kernels: a writable cache, CPU threads, the CUDA module.

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

import numba  # noqa: E402  (must come after the cache folder is settled)
import numba.np.ufunc.parallel  # noqa: E402
from numba import cuda, njit, prange  # noqa: E402,F401

from tinynet import _threads  # noqa: E402

# numba's parallel loops run on OpenMP threads, and the GEMMs right before and after them on
# OpenBLAS's threads.  By default OpenMP threads spin for a while after each parallel loop,
# stealing the cores BLAS needs next (and vice versa); passive threads made AlexNet's batch-1
# inference more than twice as fast on 2 cores (figures: benchmarks/README.md, "Measurements
# behind the kernels' design").  numba's OpenMP runtime starts with OMP_WAIT_POLICY=PASSIVE,
# set only while it loads so that PyTorch's OpenMP keeps its own default (tinynet/_threads.py).
# Export OMP_WAIT_POLICY yourself to override this default.
_threads.make_numba_openmp_passive(numba.np.ufunc.parallel)

#: threads per CUDA block for the one-thread-per-element kernels
THREADS_PER_BLOCK = 256


def blocks_for(n_items: int, threads: int = THREADS_PER_BLOCK) -> int:
    """How many blocks of ``threads`` cover ``n_items`` (at least one)."""
    return max(1, (int(n_items) + threads - 1) // threads)


def simulating_cuda() -> bool:
    """True under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return bool(numba.config.ENABLE_CUDASIM)
