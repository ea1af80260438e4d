"""tinynet.kernels: the hand-written math of the layers, arrays in and arrays out.

No autograd lives here.  Each module holds one operation with its forward and
backward next to each other, a CPU path (NumPy + numba) and a GPU path
(CuPy arrays + numba.cuda kernels, GEMMs through cuBLAS), and a docstring that
states the formula, the shapes and the derivation of the backward pass.
The array module is chosen by where the data lives (``get_array_module``).
"""
from . import _numba  # noqa: F401  (settles numba's cache folder before any kernel compiles)
