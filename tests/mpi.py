"""Where the tests find ``mpiexec``: the mpich wheel of the test extra installs it next to the
interpreter, which need not be on PATH."""
import os
import shutil
import sys

import pytest


def mpiexec():
    """The path of ``mpiexec``; a test that needs it fails (never skips) when it is missing."""
    found = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                           os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail("mpiexec not found: install the test extra (pip install -e \".[test]\"), which brings the "
                    "mpich wheel and mpi4py")
    return found
