"""tinynet's thread settings take effect whatever the user imported first (tinynet/_threads.py).

Each case runs in a fresh interpreter: OpenBLAS reads its setting once, as it loads.  What is
checked is the effect, not the environment variable:

* OpenBLAS: the timeout it read (``openblas_thread_timeout()``) and its workers' behaviour: after
  a GEMM, with the default timeout a worker spins for about 0.1 s and the process burns CPU while
  the main thread sleeps; with 2**4 cycles it sleeps at once.
* tinynet's CPU kernels run on its own threads (kernels/_numba.py): numba's threading layer is
  never started, no OpenMP runtime is loaded on tinynet's behalf (PyTorch's, when imported, is
  PyTorch's alone, with its own defaults), ``OMP_WAIT_POLICY`` is never set, and the kernel
  threads do not spin while the program sleeps.
"""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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
tinynet.relu(x).sum().backward()           # ReLU's backward runs on tinynet's kernel threads
import numba.np.ufunc.parallel as numba_parallel
print("numba_layer_started", numba_parallel._is_initialized)
print("omp_env_after", os.environ.get("OMP_WAIT_POLICY"))
runtimes = [p for fragment in ("libgomp", "libiomp", "libomp", "libtbb") for p in _threads.loaded_libraries(fragment)]
print("openmp_not_torch", [p for p in runtimes if "torch" not in p])

blas = ctypes.CDLL(_threads.loaded_libraries("openblas")[0])
blas.openblas_thread_timeout.restype = ctypes.c_uint
print("blas_timeout", blas.openblas_thread_timeout())
def cpu_seconds():
    t = os.times()
    return t.user + t.system
a = np.ones((300, 300), np.float32)
g = np.ones(1 << 20, np.float32)
spin = 0.0
for _ in range(10):
    assert (a @ a == 300).all()                # the restarted thread pool still computes
    tinynet.relu(tinynet.tensor(g, requires_grad=True)).sum().backward()   # and a parallel kernel
    before = cpu_seconds()
    time.sleep(0.1)
    spin += cpu_seconds() - before
print("spin", spin)
"""


def _probe(first_imports, env_extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "PYTHONPATH")}
    env.update(OPENBLAS_NUM_THREADS="2", NUMBA_NUM_THREADS="2")  # worker threads that could spin
    env.update(env_extra or {})
    result = subprocess.run([sys.executable, "-c", PROBE, first_imports], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    values = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    values["warnings"] = [line for line in result.stderr.splitlines() if "Warning" in line]
    return values


# "tinynet": nothing before tinynet; "numpy": the usual user program; "torch,numpy": PyTorch too
@pytest.mark.parametrize("first_imports", ["", "numpy", "torch,numpy"])
def test_thread_settings_take_effect_whatever_was_imported_first(first_imports):
    values = _probe(first_imports)
    assert values["blas_timeout"] == "4"
    # default timeout: about 0.25 CPU-seconds of spinning over the 10 sleeps on 2 threads here
    assert float(values["spin"]) < 0.05, values
    assert values["numba_layer_started"] == "False"     # no numba OpenMP/TBB/workqueue threads
    assert values["openmp_not_torch"] == "[]"           # no OpenMP (or TBB) runtime loaded for tinynet
    assert values["omp_env_after"] == "None"            # PyTorch's OpenMP keeps its own default
    assert values["warnings"] == []


def test_exported_values_are_respected_whatever_the_order():
    values = _probe("numpy", {"OPENBLAS_THREAD_TIMEOUT": "12", "OMP_WAIT_POLICY": "ACTIVE"})
    assert values["blas_timeout"] == "12"
    assert values["omp_env_after"] == "ACTIVE"          # the user's, left alone


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
