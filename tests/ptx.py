"""Compile tinynet's numba.cuda kernels to PTX for an H100 (compute capability 9.0) without a GPU.

The CUDA simulator runs kernels as Python, so it cannot see errors that only the
real compiler reports (an unsupported NumPy call, a type that cannot be unified,
a signature the code launches that nobody compiled).  ``compile_ptx`` needs no
device, only the CUDA target's compiler libraries (NVVM, NVRTC), and is not
available under the simulator, so compilation runs in a subprocess with the
simulator off.

Which target: the ``gpu`` extra installs **numba-cuda**, NVIDIA's CUDA target,
which replaces the copy built into numba.  The subprocess uses it when it is
importable there (``pip install -e ".[gpu]"``), or from the folder named by
``TINYNET_NUMBA_CUDA_SITE`` (``pip install --target DIR numba-cuda cuda-bindings
cuda-core cuda-pathfinder nvidia-cuda-nvrtc nvidia-nvvm``: CI's way, which leaves
the test environment's numba untouched; without the variable, the folder where
``.ci/run`` puts it, :data:`DEFAULT_SITE`).  Where neither exists the PTX tests
skip, saying so (and ``.ci/run`` fails on that skip).

Which signatures: exactly those the code launches.  :func:`describe_launches`
turns the launches recorded while the GPU path ran under the simulator (see
``fake_cupy.recording_launches``) into ``(module, kernel, argument types)``.
"""
import json
import os
import subprocess
import sys

import pytest

#: where .ci/run installs numba-cuda when TINYNET_NUMBA_CUDA_SITE is not set (kept between runs)
DEFAULT_SITE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "tinynet", "numba-cuda-0.30.4")
NUMBA_CUDA_SITE = os.environ.get("TINYNET_NUMBA_CUDA_SITE") or (
    DEFAULT_SITE if os.path.isfile(os.path.join(DEFAULT_SITE, ".complete")) else None)

_SCRIPT = r"""
import json, site, sys
if sys.argv[1]:
    site.addsitedir(sys.argv[1])  # runs numba-cuda's redirector (.pth) before numba.cuda is imported
import importlib, numpy
import numba
from numba import cuda, types
implementation = getattr(cuda, "implementation", "Built-in")
if implementation == "Built-in":
    print("numba-cuda is not installed: numba.cuda is numba's deprecated built-in target")
    sys.exit(3)

def argument_type(description):
    if description[0] == "array":
        _, dtype, ndim, layout = description
        return types.Array(numba.from_dtype(numpy.dtype(dtype)), ndim, layout)
    return types.boolean if description[1] == "bool" else numba.from_dtype(numpy.dtype(description[1]))

failures, compiled = [], 0
for module_name, attribute, arguments in json.load(sys.stdin):
    kernel = getattr(importlib.import_module(module_name), attribute)
    function = getattr(kernel, "py_func", kernel)
    signature = tuple(argument_type(a) for a in arguments)
    try:
        ptx, _ = cuda.compile_ptx(function, signature, cc=(9, 0))
        assert ".target sm_90" in ptx, "not sm_90 PTX"
        compiled += 1
    except Exception as error:
        failures.append(f"{module_name}.{attribute}{signature}: {type(error).__name__}: {error}")
print(f"compiled {compiled} kernel signatures with numba-cuda ({cuda.__file__})")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"""


def describe_type(numba_type):
    """A JSON description of a kernel argument's numba type (arrays: dtype, ndim, layout)."""
    import numba
    if isinstance(numba_type, numba.types.Array):
        return ["array", str(numba_type.dtype), numba_type.ndim, numba_type.layout]
    return ["scalar", "bool" if numba_type == numba.types.boolean else str(numba_type)]


def describe_launches(records):
    """Distinct ``(module, kernel name, [argument types])`` of recorded launches, sorted."""
    seen = {(fn.__module__, fn.__name__, json.dumps([describe_type(t) for t in types]))
            for fn, types in records}
    return [(module, name, json.loads(arguments)) for module, name, arguments in sorted(seen)]


def _environment():
    environment = dict(os.environ)
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    if NUMBA_CUDA_SITE:  # the NVRTC/NVVM libraries that pip installed next to numba-cuda
        libraries = os.path.join(NUMBA_CUDA_SITE, "nvidia", "cu13", "lib")
        environment["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (libraries, environment.get("LD_LIBRARY_PATH")) if p)
    return environment


def compile_launches_to_ptx(launches):
    """Compile every ``(module, kernel, argument types)`` to sm_90 PTX with numba-cuda; fail with
    the compiler's errors, skip (with the reason) where numba-cuda or its compiler is missing."""
    result = subprocess.run([sys.executable, "-c", _SCRIPT, NUMBA_CUDA_SITE or ""],
                            input=json.dumps(launches), env=_environment(), capture_output=True,
                            text=True, timeout=900)
    if result.returncode == 3:
        pytest.skip("PTX not compiled: " + result.stdout.strip() + " (pip install -e '.[gpu]', or set "
                    "TINYNET_NUMBA_CUDA_SITE to a folder with numba-cuda, as .ci/run does)")
    if result.returncode != 0 and "DynamicLibNotFoundError" in result.stderr + result.stdout:
        pytest.skip("PTX not compiled: numba-cuda is installed but the CUDA compiler libraries (NVVM, "
                    "NVRTC) are not: " + result.stderr.strip().splitlines()[-1][:300])
    assert result.returncode == 0, f"PTX compilation failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result.stdout


def compile_kernels_to_ptx(module_name, kernels):
    """Compile ``[(attribute, signature string), ...]`` of ``module_name`` (older per-kernel tests)."""
    import numba
    from numba.core import sigutils
    launches = []
    for attribute, signature in kernels:
        arguments, _ = sigutils.normalize_signature(signature)
        launches.append((module_name, attribute, [describe_type(t) for t in arguments]))
    compile_launches_to_ptx(launches)
