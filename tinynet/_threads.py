"""The OpenBLAS thread setting tinynet's CPU speed depends on, applied whatever was imported first.

On 2 cores tinynet alternates GEMMs (NumPy's OpenBLAS threads) with its own CPU kernels (numba
code on tinynet's thread pool, kernels/_numba.py).  OpenBLAS's threads spin after each GEMM by
default, and a spinning thread takes a core from the kernel that runs next (figures:
benchmarks/README.md, "Measurements behind the design").  The cure is an environment variable
that OpenBLAS reads only once:

``OPENBLAS_THREAD_TIMEOUT=4``
    OpenBLAS reads it when the library loads, i.e. at ``import numpy``.  A program that imports
    NumPy before tinynet (most do) has loaded OpenBLAS already.  OpenBLAS exports the two
    functions needed to apply it later: ``openblas_read_env`` re-reads the environment, and
    ``blas_thread_shutdown_`` (what OpenBLAS itself calls around ``fork``) stops the worker
    threads; the next GEMM starts them again through ``blas_thread_init``, which takes the timeout
    from the re-read environment (OpenBLAS's driver/others/blas_server.c and openblas_env.c).
    Where a BLAS lacks those exports (another BLAS, an OpenBLAS built with hidden symbols),
    tinynet warns once, at import, naming the variable to export.

tinynet's kernel threads block on their job queue when idle, so they need no setting, and
tinynet never starts an OpenMP runtime: PyTorch's, if loaded, keeps its own defaults.

A value the user exported is always respected.
"""
import ctypes
import os
import warnings

OPENBLAS_THREAD_TIMEOUT = "4"


def loaded_libraries(name_fragment):
    """Paths of the shared libraries mapped into this process whose file name contains the fragment.

    Reads /proc/self/maps (Linux); elsewhere returns None, meaning "cannot tell".
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.readlines()
    except OSError:
        return None
    paths = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6:
            path = fields[5].strip()
            if name_fragment in os.path.basename(path) and path not in paths:
                paths.append(path)
    return paths


def _warn(message):
    # stacklevel: point past importlib's frames at nothing in particular; the message names the fix
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def apply_openblas_thread_timeout():
    """Make the loaded OpenBLAS (if any) use ``OPENBLAS_THREAD_TIMEOUT`` (default 4).

    Returns what was done, for tests and the benchmark's report: ``"at load"`` (OpenBLAS not
    loaded yet: it will read the variable as it loads), ``"already in effect"``, ``"applied"``
    (re-read and thread pool restarted), or ``"warned"``.
    """
    wanted = os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    try:
        wanted_value = int(wanted)
    except ValueError:
        return "already in effect"  # the user's own (unparsable) value: OpenBLAS treats it as unset
    libraries = loaded_libraries("openblas")
    if libraries is None:
        import sys
        if "numpy" in sys.modules:
            _warn("tinynet could not check the OpenBLAS thread timeout on this system and NumPy was "
                  "imported first; export OPENBLAS_THREAD_TIMEOUT=4 before starting Python (or import "
                  "tinynet before NumPy) for full CPU speed")
            return "warned"
        return "at load"
    if not libraries:
        return "at load"
    outcome = "already in effect"
    for path in libraries:
        try:
            library = ctypes.CDLL(path)  # the already-loaded copy: dlopen returns its handle
            read_timeout = library.openblas_thread_timeout
            read_env = library.openblas_read_env
            shutdown = library.blas_thread_shutdown_
        except (OSError, AttributeError):
            _warn(f"NumPy was imported before tinynet and its BLAS ({os.path.basename(path)}) does not "
                  "let tinynet set its thread timeout; export OPENBLAS_THREAD_TIMEOUT=4 before starting "
                  "Python (or import tinynet first) for full CPU speed")
            return "warned"
        read_timeout.restype = ctypes.c_uint
        if read_timeout() == wanted_value:
            continue
        read_env()   # OpenBLAS caches the environment; make it see the variable we just set
        shutdown()   # workers stop; the next BLAS call restarts them with the new timeout
        outcome = "applied"
    return outcome
