"""Compile numba.cuda kernels to PTX for an H100 (compute capability 9.0) without a GPU.

The CUDA simulator runs kernels as Python, so it cannot see errors that only the
real compiler reports (an unsupported NumPy call, a type that cannot be unified).
``compile_ptx`` needs no device, only numba's NVVM, but it is not available under
the simulator, so the compilation runs in a subprocess with the simulator off.
"""
import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r"""
import importlib, json, sys
from numba import cuda
module = importlib.import_module(sys.argv[1])
failures = []
for attribute, signature in json.loads(sys.argv[2]):
    kernel = getattr(module, attribute)
    function = getattr(kernel, "py_func", kernel)
    try:
        ptx, _ = cuda.compile_ptx(function, signature, cc=(9, 0))
        assert ".target sm_90" in ptx
    except Exception as error:
        failures.append(f"{attribute}{signature}: {type(error).__name__}: {error}")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"""


def compile_kernels_to_ptx(module_name, kernels):
    """Compile ``[(attribute, signature), ...]`` of ``module_name`` to sm_90 PTX; fail with the errors."""
    environment = dict(os.environ)
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; cuda.compile_ptx"],
                           env=environment, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("numba.cuda.compile_ptx is not usable here (no NVVM): " + probe.stderr[-300:])
    result = subprocess.run([sys.executable, "-c", _SCRIPT, module_name, json.dumps(kernels)],
                            env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"PTX compilation failed:\n{result.stdout}\n{result.stderr[-3000:]}"
