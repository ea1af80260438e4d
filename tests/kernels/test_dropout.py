"""Tests of the dropout kernels (kernels/dropout.py)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.gradcheck import numerical_gradient
from tinynet.kernels.dropout import dropout_backward, dropout_forward


def naive_dropout(x, p, uniform, training=True, scale_in_training=True):
    """The definition, element by element."""
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        keep = 1.0 if uniform[i] >= p else 0.0
        if training:
            if not keep:            # p = 1 drops all: no 0 / 0
                y[i] = 0.0
            else:
                y[i] = x[i] / (1 - p) if scale_in_training else x[i]
        else:
            y[i] = x[i] if scale_in_training else x[i] * (1 - p)
    return y


@st.composite
def cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    p = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]) | st.floats(0.01, 0.99))
    return rng.standard_normal(shape), p, rng.random(shape)


@settings(max_examples=40)
@given(case=cases(), training=st.booleans(), scale_in_training=st.booleans())
def test_matches_the_definition(case, training, scale_in_training):
    x, p, uniform = case
    y, mask = dropout_forward(x, p, uniform, training=training, scale_in_training=scale_in_training)
    np.testing.assert_allclose(y, naive_dropout(x, p, uniform, training, scale_in_training), rtol=1e-15)
    grad_output = np.ones_like(x) * 3.0
    grad = dropout_backward(grad_output, mask)
    # the backward multiplies by exactly the factor the forward applied
    np.testing.assert_allclose(grad, 3.0 * naive_dropout(np.ones_like(x), p, uniform, training,
                                                          scale_in_training), rtol=1e-15)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("scale_in_training", [True, False])
def test_statistics_fraction_dropped_and_expectation(p, scale_in_training):
    rng = np.random.default_rng(int(p * 10))
    count = 200_000
    x = rng.uniform(0.5, 1.5, count)
    y, mask = dropout_forward(x, p, rng.random(count), scale_in_training=scale_in_training)
    dropped = np.mean(y == 0)
    sigma = np.sqrt(p * (1 - p) / count)
    assert abs(dropped - p) < 5 * sigma
    # E[y_train] equals the eval output: x (inverted) or x (1 - p) (paper)
    y_eval, _ = dropout_forward(x, p, None, training=False, scale_in_training=scale_in_training)
    spread = np.std(y) / np.sqrt(count)
    assert abs(y.mean() - y_eval.mean()) < 5 * spread
    if scale_in_training:
        assert abs(y.mean() - x.mean()) < 5 * spread


def test_deterministic_for_a_fixed_uniform():
    rng = np.random.default_rng(5)
    x, uniform = rng.standard_normal((4, 7)), rng.random((4, 7))
    first = dropout_forward(x, 0.3, uniform)
    second = dropout_forward(x, 0.3, uniform.copy())
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    # the kept elements are exactly those with uniform >= p
    np.testing.assert_array_equal(first[1] != 0, uniform >= 0.3)


def test_p_zero_is_the_identity():
    x = np.random.default_rng(6).standard_normal((3, 4))
    for scale_in_training in (True, False):
        for training in (True, False):
            y, mask = dropout_forward(x, 0.0, np.random.default_rng(0).random(x.shape), training=training,
                                      scale_in_training=scale_in_training)
            np.testing.assert_array_equal(y, x)
            assert mask is None
    grad = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(dropout_backward(grad, None), grad)


def test_p_one_drops_everything_without_dividing_by_zero():
    x = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for scale_in_training in (True, False):
            y, mask = dropout_forward(x, 1.0, np.random.default_rng(0).random(x.shape),
                                      scale_in_training=scale_in_training)
            assert y.dtype == np.float32 and not y.any()
            assert not dropout_backward(np.ones_like(x), mask).any()
        # eval of the paper variant with p = 1 multiplies by 0
        y, mask = dropout_forward(x, 1.0, None, training=False, scale_in_training=False)
        assert not y.any()


def test_eval_modes():
    x = np.random.default_rng(8).standard_normal((2, 3, 4)).astype(np.float32)
    grad = np.random.default_rng(9).standard_normal(x.shape).astype(np.float32)
    y, mask = dropout_forward(x, 0.4, None, training=False)
    assert y is x and mask is None
    np.testing.assert_array_equal(dropout_backward(grad, mask), grad)
    y, mask = dropout_forward(x, 0.4, None, training=False, scale_in_training=False)
    assert y.dtype == np.float32 and np.ndim(mask) == 0 and mask.dtype == np.float32
    np.testing.assert_allclose(y, x * np.float32(0.6), rtol=1e-7)
    np.testing.assert_allclose(dropout_backward(grad, mask), grad * np.float32(0.6), rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((5, 6)).astype(dtype)
    y, mask = dropout_forward(x, 0.5, rng.random(x.shape, dtype=np.float32))
    assert y.dtype == dtype and mask.dtype == dtype
    assert dropout_backward(np.ones_like(x), mask).dtype == dtype
    np.testing.assert_array_equal(np.unique(mask), [0, 2])


@settings(max_examples=15)
@given(case=cases(), scale_in_training=st.booleans(), training=st.booleans())
def test_gradient_matches_numerical_gradient(case, scale_in_training, training):
    x, p, uniform = case
    x = np.ascontiguousarray(x)
    grad_output = np.random.default_rng(1).standard_normal(x.shape)
    options = dict(training=training, scale_in_training=scale_in_training)
    _, mask = dropout_forward(x, p, uniform, **options)
    # copy: in the identity cases the forward returns x itself, which the nudges then move too
    expected = numerical_gradient(lambda: np.array(dropout_forward(x, p, uniform, **options)[0]),
                                  x, grad_output)
    np.testing.assert_allclose(dropout_backward(grad_output, mask), expected, rtol=1e-7, atol=1e-9)


def test_gpu_path_matches_the_definition(gpu_xp):
    """The GPU path against the naive definition (not against the CPU path, which runs the same
    array-module calls and would share any bug), in both variants."""
    rng = np.random.default_rng(11)
    x, uniform = rng.standard_normal((3, 5)).astype(np.float32), rng.random((3, 5)).astype(np.float32)
    grad_output = rng.standard_normal((3, 5)).astype(np.float32)
    for scale_in_training in (True, False):
        expected_y = naive_dropout(x, 0.5, uniform, scale_in_training=scale_in_training)
        expected_mask = naive_dropout(np.ones_like(x), 0.5, uniform, scale_in_training=scale_in_training)
        y_gpu, mask_gpu = dropout_forward(gpu_xp.asarray(x), 0.5, gpu_xp.asarray(uniform),
                                          scale_in_training=scale_in_training)
        grad_gpu = dropout_backward(gpu_xp.asarray(grad_output), mask_gpu)
        for array in (y_gpu, mask_gpu, grad_gpu):
            assert isinstance(array, gpu_xp.ndarray) and array.dtype == np.float32
        np.testing.assert_allclose(gpu_xp.asnumpy(y_gpu), expected_y, rtol=1e-6)
        np.testing.assert_allclose(gpu_xp.asnumpy(grad_gpu), grad_output * expected_mask, rtol=1e-6)
    y_gpu, _ = dropout_forward(gpu_xp.asarray(x), 1.0, None)
    assert isinstance(y_gpu, gpu_xp.ndarray) and not gpu_xp.asnumpy(y_gpu).any()


def test_bad_arguments_raise_value_error():
    x = np.ones((2, 3))
    for p in (-0.1, 1.5, float("nan"), "half"):
        with pytest.raises(ValueError, match="dropout.*p"):
            dropout_forward(x, p, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dropout.*\\(2, 3\\).*\\(3, 2\\)"):
        dropout_forward(x, 0.5, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="uniform=None"):
        dropout_forward(x, 0.5, None)
    with pytest.raises(ValueError, match="mask"):
        dropout_backward(x, np.ones((3, 2)))
