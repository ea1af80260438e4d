"""Test-wide set-up.

numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first imported, so the
simulator switch must be set here before anything imports tinynet.  On a
machine with a real GPU, run the suite with ``TINYNET_TEST_REAL_GPU=1`` to use
the real CUDA target and CuPy instead.
"""
import os

REAL_GPU = os.environ.get("TINYNET_TEST_REAL_GPU") == "1"
if not REAL_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import sys  # noqa: E402

# examples/ on the import path, as `python examples/x.py` has it: `import models` (the model zoo)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "tinynet", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("tinynet")


@pytest.fixture
def gpu_xp():
    """The GPU array module for the test: real CuPy on a GPU machine, else the NumPy stand-in.

    While the fixture is active tinynet's backend treats the stand-in's arrays as
    GPU arrays, so code under test takes its GPU branch.
    """
    from tinynet import backend
    if REAL_GPU:
        yield backend.array_module_for("gpu")
        return
    from fake_cupy import fake_cupy
    previous = backend.set_gpu_module(fake_cupy)
    try:
        yield fake_cupy
    finally:
        backend.set_gpu_module(previous)
