"""Stacks of GEMMs, ``out[i] = a[i] @ b[i]``, with the small ones spread over tinynet's CPU threads.

Winograd's alpha^2 products (``conv2d_winograd.py``) are one such stack per call.  At batch 1
each product is small: ResNet's 64-channel layer on 56 x 56 pixels multiplies (196 tiles, 64)
by (64, 64) 36 times.  OpenBLAS (0.3.x on AVX-512 CPUs, as NumPy's wheels ship it) runs a
product with M * N * K <= 10^6 through its "small matrix" kernels on the calling thread alone,
whatever its thread count, so a stack handed to NumPy as one call runs on one core.  Here
consecutive ranges of the stack go to tinynet's threads (``_numba.parallel_tasks``), each range
one ``matmul`` call that releases the GIL, and every core works.

On the 2-vCPU AMD EPYC of benchmarks/README.md (NumPy 2.4, OpenBLAS 0.3.31), GFLOP/s of a
stack as one call against spread over 2 threads:

    stack x (M, K) @ (K, N)       M*N*K     one call   2 threads
    36 x (196, 64) @ (64, 64)     0.80 M    112        188
    36 x (49, 128) @ (128, 128)   0.80 M    108        181
    25 x (81, 48) @ (48, 128)     0.50 M    110        151
    16 x (16, 256) @ (256, 256)   1.05 M     88         82
    16 x (49, 256) @ (256, 256)   3.21 M    150        145

Above 10^6 OpenBLAS threads each product itself, and two threads each running a product of
their own were no faster (slower still between 10^6 and a few 10^6), so such stacks stay one
call.  CuPy (and any other array module) gets one batched call.
"""
import numpy

from ._numba import parallel_tasks

#: the largest M * N * K that OpenBLAS runs on the calling thread alone (its small-matrix kernels)
SMALL_PRODUCT = 1_000_000


def _matmul_ranges(a, b, out, first, last):
    # one NumPy call per range: the GIL is released for all of its products
    numpy.matmul(a[first:last], b[first:last], out=out[first:last])


def matmul_stack(xp, a, b, out):
    """``out[i] = a[i] @ b[i]`` for 3-D stacks (``a`` (S, M, K), ``b`` (S, K, N), ``out`` (S, M, N));
    returns ``out``.  NumPy stacks of small products run over the CPU threads (module docstring)."""
    stack, m, k = a.shape
    n = b.shape[-1]
    if xp is not numpy or m * n * k > SMALL_PRODUCT:
        return xp.matmul(a, b, out=out)
    parallel_tasks(_matmul_ranges, stack, a, b, out)
    return out
