"""Starting the tests' worker programs, under ``mpiexec`` or alone: where ``mpiexec`` is, and their
environment."""
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mpiexec():
    """The path of ``mpiexec``; a test that needs it fails (never skips) when it is missing."""
    found = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                           os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail("mpiexec not found: install the test extra (pip install -e \".[test]\"), which brings the "
                    "mpich wheel and mpi4py")
    return found


def worker_environment(extra=None):
    """The environment of a worker: this checkout's tinynet first on the path (a worker runs as a script
    from tests/, which puts tests/ -- fake_cupy and friends -- on its path), one thread per rank (two
    ranks with two threads each would fight over 2 cores), and no MPI variables of an enclosing job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update({name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")})
    env.update(extra or {})
    return env
