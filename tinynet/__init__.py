"""tinynet: a deep-learning framework written from scratch on NumPy (CPU) and CuPy (GPU).

    import tinynet
    x = tinynet.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x
"""
import os as _os

# OpenBLAS (NumPy's BLAS) keeps its worker threads spinning for 2**28 cycles, about 0.1 s, after
# every GEMM, and tinynet runs a numba parallel loop (ReLU, pooling, LRN, the Winograd transforms)
# right after most GEMMs: on 2 cores the spinning worker took a core from it (what cutting the spin
# to 2**4 cycles gained: benchmarks/README.md, "Measurements behind the design").
# OPENBLAS_THREAD_TIMEOUT=4 unless the user set it; it takes effect whether NumPy was imported
# before tinynet or not (how, and the warning where it cannot: tinynet/_threads.py).
from . import _threads

_threads.apply_openblas_thread_timeout()

from ._subpackages import attach as _attach

# tinynet.kernels must exist before any module that wraps a kernel is imported; a source tree
# always uses its own kernels/ (tinynet/_subpackages.py says why)
kernels = _attach(__name__, _os.path.dirname(__file__), "kernels")

from . import backend  # noqa: E402
from .backend import get_array_module, gpu_available, manual_seed  # noqa: E402
from .function import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: E402
from .tensor import Tensor, tensor  # noqa: E402
from .functions import (cat, concat, exp, log, matmul, max, mean, relu, sigmoid, softmax,  # noqa: E402
                        sqrt, stack, sum, tanh, log_softmax, zeros, ones, randn, rand, arange)
from .gradcheck import GradcheckError, gradcheck, numerical_gradient  # noqa: E402
from .checkpoint import CheckpointError, load, save  # noqa: E402
from . import nn, optim  # noqa: E402
from .summary import summary  # noqa: E402

# the registry of the course's networks (examples/models/, installed as tinynet.models); its
# model modules are imported on first use, so this costs a few small files
models = _attach(__name__, _os.path.dirname(__file__), "models")

__version__ = "0.1.0"
