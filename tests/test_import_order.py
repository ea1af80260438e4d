"""tinynet's two thread settings take effect whatever the user imported first (tinynet/_threads.py).

Each case runs in a fresh interpreter: both settings are read by native libraries once, as they
load.  What is checked is the effect, not the environment variable:

* OpenBLAS: the timeout it read (``openblas_thread_timeout()``) and its workers' behaviour: after
  a GEMM, with the default timeout a worker spins for about 0.1 s and the process burns CPU while
  the main thread sleeps; with 2**4 cycles it sleeps at once.
* numba's OpenMP runtime: how long its threads spin after a loop, as it reports it
  (``omp_display_env``, OpenMP 5.1: GOMP_SPINCOUNT is 0 when passive, 300000 by default; its
  OMP_WAIT_POLICY line says PASSIVE for the default too, so it cannot tell them apart), and that
  ``OMP_WAIT_POLICY`` is gone from the environment afterwards, so an OpenMP runtime loaded later
  (PyTorch's own libgomp) starts with its own default.
"""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import ctypes, os, sys, time, warnings
warnings.simplefilter("always")
for name in sys.argv[1].split(","):
    if name:
        __import__(name)
import numpy as np
import tinynet
from tinynet import _threads

x = tinynet.tensor(np.linspace(-1, 1, 64 * 1000).reshape(64, 1000).astype(np.float32), requires_grad=True)
tinynet.relu(x).sum().backward()           # ReLU's backward is a numba parallel loop
import numba
print("layer", numba.threading_layer())
print("omp_env_after", os.environ.get("OMP_WAIT_POLICY"))
numba_omp = [p for p in _threads.loaded_libraries("gomp") if "torch" not in p]
sys.stdout.flush()
ctypes.CDLL(numba_omp[0]).omp_display_env(1)   # prints GOMP_SPINCOUNT = '...' on stderr

blas = ctypes.CDLL(_threads.loaded_libraries("openblas")[0])
blas.openblas_thread_timeout.restype = ctypes.c_uint
print("blas_timeout", blas.openblas_thread_timeout())
def cpu_seconds():
    t = os.times()
    return t.user + t.system
a = np.ones((300, 300), np.float32)
spin = 0.0
for _ in range(10):
    assert (a @ a == 300).all()                # the restarted thread pool still computes
    before = cpu_seconds()
    time.sleep(0.1)
    spin += cpu_seconds() - before
print("spin", spin)
"""


def _probe(first_imports, env_extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "PYTHONPATH")}
    env.update(OPENBLAS_NUM_THREADS="2", NUMBA_NUM_THREADS="2")  # a worker thread that could spin
    env.update(env_extra or {})
    result = subprocess.run([sys.executable, "-c", PROBE, first_imports], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    values = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    policy = re.search(r"OMP_WAIT_POLICY = '(\w+)'", result.stderr)
    values["numba_omp_policy"] = policy.group(1) if policy else None
    spin_count = re.search(r"GOMP_SPINCOUNT = '(\d+)'", result.stderr)
    values["numba_omp_spin_count"] = int(spin_count.group(1)) if spin_count else None
    values["warnings"] = [line for line in result.stderr.splitlines() if "Warning" in line]
    return values


# "tinynet": nothing before tinynet; "numpy": the usual user program; "torch,numpy": PyTorch too
@pytest.mark.parametrize("first_imports", ["", "numpy", "torch,numpy"])
def test_thread_settings_take_effect_whatever_was_imported_first(first_imports):
    values = _probe(first_imports)
    assert values["layer"] == "omp"
    assert values["blas_timeout"] == "4"
    # default timeout: about 0.25 CPU-seconds of spinning over the 10 sleeps on 2 threads here
    assert float(values["spin"]) < 0.05, values
    assert values["numba_omp_spin_count"] == 0          # passive: 300000 spins by default
    assert values["omp_env_after"] == "None"  # PyTorch's OpenMP, loaded later, keeps its default
    assert values["warnings"] == []


def test_exported_values_are_respected_whatever_the_order():
    values = _probe("numpy", {"OPENBLAS_THREAD_TIMEOUT": "12", "OMP_WAIT_POLICY": "ACTIVE"})
    assert values["blas_timeout"] == "12"
    assert values["numba_omp_policy"] == "ACTIVE"
    assert values["numba_omp_spin_count"] > 300000
    assert values["omp_env_after"] == "ACTIVE"


def test_numba_threads_started_before_tinynet_warn_with_the_fix():
    code = ("import numpy as np, numba\n"
            "@numba.njit(parallel=True)\n"
            "def double(a):\n"
            "    for i in numba.prange(a.shape[0]):\n"
            "        a[i] *= 2\n"
            "double(np.ones(10))\n"
            "import tinynet\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("export OMP_WAIT_POLICY=PASSIVE") == 1, result.stderr


def test_a_blas_without_the_needed_exports_warns_with_the_fix(monkeypatch):
    from tinynet import _threads
    # a loaded library that is not an OpenBLAS with openblas_read_env and blas_thread_shutdown_
    python_library = [p for p in _threads.loaded_libraries("libpython") or []] or \
        [p for p in _threads.loaded_libraries("libc.so") or []]
    if not python_library:
        pytest.fail("no stand-in library found in /proc/self/maps")
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")
    monkeypatch.setattr(_threads, "loaded_libraries", lambda fragment: python_library[:1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _threads.apply_openblas_thread_timeout() == "warned"
    assert len(caught) == 1 and "export OPENBLAS_THREAD_TIMEOUT=4" in str(caught[0].message)


class _FakeParallelModule:
    """Stands in for numba.np.ufunc.parallel: records the environment its launcher saw."""

    def __init__(self):
        self._is_initialized = False
        self._threading_layer = None
        self.seen_policy = "not launched"

    def _launch_threads(self):
        if self._is_initialized:             # as numba's: the threads start once
            return
        self.seen_policy = os.environ.get("OMP_WAIT_POLICY")
        self._is_initialized, self._threading_layer = True, "omp"


def test_a_shared_openmp_runtime_loaded_earlier_warns_and_the_environment_is_restored(monkeypatch):
    from tinynet import _threads
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    # the same OpenMP runtime mapped before and after the launch: it was loaded by someone else
    monkeypatch.setattr(_threads, "loaded_libraries", lambda fragment: ["/somewhere/libgomp.so.1"])
    parallel = _FakeParallelModule()
    _threads.make_numba_openmp_passive(parallel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel._launch_threads()
        parallel._launch_threads()          # launched already: nothing more
    assert parallel.seen_policy == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in os.environ
    assert len(caught) == 1 and "export OMP_WAIT_POLICY=PASSIVE" in str(caught[0].message)


def test_a_newly_loaded_openmp_runtime_starts_passive_without_a_warning(monkeypatch):
    from tinynet import _threads
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    parallel = _FakeParallelModule()
    mapped = []
    monkeypatch.setattr(_threads, "loaded_libraries", lambda fragment: list(mapped))
    original = parallel._launch_threads

    def launch_loading_a_runtime():
        mapped.append("/usr/lib/libgomp.so.1.0.0")
        original()
    parallel._launch_threads = launch_loading_a_runtime
    _threads.make_numba_openmp_passive(parallel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel._launch_threads()
    assert parallel.seen_policy == "PASSIVE" and "OMP_WAIT_POLICY" not in os.environ
    assert caught == []
