"""tinynet.kernels: the hand-written math of the layers, arrays in and arrays out.

No autograd lives here.  Each module holds one operation with its forward and
backward next to each other, and a docstring that states the formula, the
shapes and the derivation of the backward pass.  Every layer kernel speaks the
same contract, which ``tinynet.ops.kernel_function.apply_kernel`` turns into a
node of the graph:

    forward(*inputs, **hyperparameters)             -> (outputs, saved)
    backward(grad_outputs, saved, needs_input_grad) -> one gradient (or None) per input
    inference(*inputs, **hyperparameters)           -> outputs   (optional: no graph recorded)

The CPU and GPU paths of an op sit side by side in its file and are paired once
with ``_paths.device_paths``, which runs the one for the device the data lives
on.  The paths that exist:

    op                    CPU                                   GPU
    conv2d                im2col (numba) + GEMM (OpenBLAS);     im2col (numba.cuda) + GEMM (cuBLAS);
                          Winograd (conv2d_winograd.py);        1x1: GEMM on x's layout
                          strided: space to depth + Winograd
                          (conv2d_space_to_depth.py);
                          1x1: GEMM on x's layout; without a
                          graph, Winograd filters kept
    im2col / col2im       numba                                 numba.cuda
    conv2d_winograd       numba transforms + GEMM               (none: the GPU uses im2col)
    conv2d_space_to_depth numba rearrangement + Winograd        (none: the GPU uses im2col)
    max_pool2d            numba                                 numba.cuda
    avg_pool2d            numba                                 numba.cuda
    adaptive_avg_pool2d   numba                                 numba.cuda
    local_response_norm   numba                                 numba.cuda
    batch_norm            numba                                 CuPy reductions and elementwise code
    linear                GEMM (NumPy/OpenBLAS)                 GEMM (CuPy/cuBLAS)
    relu                  numba (NumPy maximum below 4,096)     CuPy maximum / where
    dropout               NumPy array code                      CuPy array code
    sgd_update            numba (one fused pass)                CuPy array code

Besides the paths, two device *policies* are chosen by the array module in
conv2d.py: reused scratch memory and chunks of images on the CPU, plain
allocations and the whole batch at once on the GPU (CuPy's memory pool already
recycles allocations, and a GPU wants the largest launches).  Likewise the
kernels' large CPU results come from recycled memory (``_recycled.py``: no fresh,
zero-filled pages at every training step), the GPU's from CuPy's pool.
"""
from . import _numba  # noqa: F401  (settles numba's cache folder before any kernel compiles)
from ._warm_up import warm_up  # noqa: E402,F401  (compile the CPU kernels in the background: _warm_up.py)
