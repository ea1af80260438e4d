"""Every CUDA kernel compiles to PTX with the signatures the GPU path launches, float32 and float64.

No signature is written down here: the GPU path runs under numba's CUDA simulator (with the
CuPy stand-in) and records the argument types of every launch; those are compiled with
numba-cuda, the CUDA target the ``gpu`` extra installs (see tests/ptx.py).  A kernel that the
workload never launches fails the test by name, so a new kernel cannot go uncompiled.

With TINYNET_TEST_REAL_GPU=1 the same workload runs on the GPU, where every launch compiles for
real, and the comparison with the CPU path is the check.
"""
import importlib
import pkgutil

import numpy as np
import pytest

import tinynet
from conftest import REAL_GPU
from ptx import compile_launches_to_ptx, describe_launches
from tinynet import backend, nn
from tinynet.nn import functional as F


class EveryKernel(nn.Module):
    """Each layer whose GPU path launches numba.cuda kernels, forward and backward."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1), nn.ReLU(),      # im2col, col2im
            nn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0),               # LRN
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),                # max pooling
            nn.AvgPool2d(2, stride=1, padding=1),                                # average pooling
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 2))

    def forward(self, x):
        return self.layers(x)


def run_the_gpu_path(dtype):
    """One forward and backward of :class:`EveryKernel` on the GPU and on the CPU; they must agree."""
    outputs = {}
    for device in ("gpu", "cpu"):
        tinynet.manual_seed(0)
        model = EveryKernel().to(device, dtype=dtype).eval()
        x = tinynet.tensor(np.random.default_rng(1).standard_normal((2, 3, 9, 9)), dtype=dtype,
                           device=device, requires_grad=True)
        loss = F.cross_entropy(model(x), np.array([0, 1]))
        loss.backward()
        outputs[device] = (loss.item(), x.grad.numpy())
    # the kernel API's other max-pool backward (atomic scatter, no geometry), which no layer calls
    from tinynet.kernels.max_pool2d import max_pool2d_backward, max_pool2d_forward
    x = np.random.default_rng(2).permutation(2 * 25).reshape(1, 2, 5, 5).astype(dtype)
    y, argmax = max_pool2d_forward(backend.to_device(x, "gpu"), 3, 2)
    scattered = max_pool2d_backward(backend.to_device(np.ones(y.shape, dtype), "gpu"), argmax, x.shape)
    _, argmax_cpu = max_pool2d_forward(x, 3, 2)
    np.testing.assert_array_equal(backend.to_numpy(scattered),
                                  max_pool2d_backward(np.ones(y.shape, dtype), argmax_cpu, x.shape))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert outputs["gpu"][0] == pytest.approx(outputs["cpu"][0], rel=tolerance)
    np.testing.assert_allclose(outputs["gpu"][1], outputs["cpu"][1], rtol=10 * tolerance, atol=tolerance)


def cuda_kernels():
    """``(module, name)`` of every numba.cuda kernel (not device function) in tinynet.kernels."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    import tinynet.kernels as package
    found = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"tinynet.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, FakeCUDAKernel) and not value._device and value.fn.__module__ == module.__name__:
                found.add((module.__name__, name))
    return found


def test_every_cuda_kernel_compiles_to_ptx_for_the_signatures_it_is_launched_with(gpu_xp):
    if REAL_GPU:  # every launch below compiles with the real target and runs on the GPU
        for dtype in (np.float32, np.float64):
            run_the_gpu_path(dtype)
        return
    import fake_cupy
    with fake_cupy.recording_launches() as records:
        for dtype in (np.float32, np.float64):
            run_the_gpu_path(dtype)
    launches = describe_launches(records)
    launched = {(module, name) for module, name, _ in launches}
    never_launched = cuda_kernels() - launched
    assert not never_launched, (
        f"CUDA kernels the GPU path never launched, so their PTX signatures are unknown: "
        f"{sorted(never_launched)}; extend EveryKernel (or delete dead kernels)")
    for module, name in launched:  # both precisions reached every kernel
        dtypes = {a[1] for m, n, arguments in launches if (m, n) == (module, name)
                  for a in arguments if a[0] == "array" and a[1].startswith("float")}
        assert {"float32", "float64"} <= dtypes, f"{module}.{name} launched only with {dtypes}"
    compile_launches_to_ptx(launches)
