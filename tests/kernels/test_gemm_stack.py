"""Tests of kernels/_gemm_stack.py: stacks of GEMMs, the small ones spread over the CPU threads."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet import backend
from tinynet.kernels import _gemm_stack


@pytest.fixture
def two_threads():
    previous = backend.get_num_threads()
    backend.set_num_threads(2)
    yield
    backend.set_num_threads(previous)


@settings(max_examples=40, deadline=None)
@given(stack=st.integers(1, 11), m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40),
       b_transposed=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_every_product_of_a_spread_stack_lands_in_its_own_slot(two_threads, stack, m, k, n, b_transposed,
                                                                dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((stack, m, k)).astype(dtype)
    # the Winograd forward pass reads U transposed: (S, N, K) seen as (S, K, N)
    b = (rng.standard_normal((stack, n, k)).astype(dtype).transpose(0, 2, 1) if b_transposed
         else rng.standard_normal((stack, k, n)).astype(dtype))
    out = np.full((stack, m, n), np.nan, dtype)
    assert _gemm_stack.matmul_stack(np, a, b, out) is out
    expected = np.stack([a[i].astype(np.float64) @ b[i].astype(np.float64) for i in range(stack)])
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance * np.sqrt(k))


def test_small_products_go_to_the_threads_and_large_ones_to_blas_in_one_call(two_threads, monkeypatch):
    spread = []
    real = _gemm_stack.parallel_tasks
    monkeypatch.setattr(_gemm_stack, "parallel_tasks",
                        lambda kernel, tasks, *arguments: (spread.append(tasks), real(kernel, tasks, *arguments)))
    rng = np.random.default_rng(0)
    small = rng.standard_normal((36, 196, 64)).astype(np.float32), rng.standard_normal((36, 64, 64)).astype(np.float32)
    large = rng.standard_normal((4, 250, 64)).astype(np.float32), rng.standard_normal((4, 64, 64)).astype(np.float32)
    for a, b in (small, large):
        out = np.empty((a.shape[0], a.shape[1], b.shape[2]), np.float32)
        _gemm_stack.matmul_stack(np, a, b, out)
        np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-5, atol=1e-4)
    # 196 * 64 * 64 <= 10^6 < 250 * 64 * 64
    assert spread == [36]


def test_another_array_module_gets_the_whole_stack_in_one_call():
    calls = []

    class ArrayModule:
        @staticmethod
        def matmul(a, b, out=None):
            calls.append((a.shape, b.shape))
            return np.matmul(a, b, out=out)

    a, b = np.ones((5, 3, 4), np.float32), np.ones((5, 4, 2), np.float32)
    out = _gemm_stack.matmul_stack(ArrayModule, a, b, np.empty((5, 3, 2), np.float32))
    assert calls == [((5, 3, 4), (5, 4, 2))] and np.all(out == 4)
