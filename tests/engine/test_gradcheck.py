"""tinynet.gradcheck itself: the central differences, and a check that fails exactly when it should.

Every other gradient test trusts these two functions, so each test here plants an error of a known
size (or a known trap: a stale gradient, an output that is a view of the input) and checks the
verdict.
"""
import numpy as np
import pytest

import tinynet
from tinynet import GradcheckError, gradcheck, numerical_gradient


def test_central_differences_give_the_derivative_of_the_weighted_sum():
    a = np.array([[0.5, -1.25, 2.0], [1.5, 0.75, -0.3]])
    w = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])
    # d/da sum(a**3 * w) = 3 a**2 w; the O(eps**2) error of central differences is 1e-12 here
    # (a one-sided difference (f(x + eps) - f(x)) / eps would be off by 3 a w eps, up to 2e-5 here)
    np.testing.assert_allclose(numerical_gradient(lambda: a ** 3, a, w), 3 * a ** 2 * w, rtol=0, atol=1e-8)
    # without output_grad: the gradient of sum(f)
    np.testing.assert_allclose(numerical_gradient(lambda: a ** 3, a), 3 * a ** 2, rtol=0, atol=1e-8)


def test_the_array_is_restored_and_an_output_that_views_it_is_copied():
    a = np.array([0.1, 0.2, 0.3, 0.4])
    before = a.copy()
    # the output *is* the perturbed array: without a copy, plus and minus would be the same array
    np.testing.assert_allclose(numerical_gradient(lambda: a, a), np.ones(4), rtol=1e-9)
    np.testing.assert_array_equal(a, before)   # bit for bit
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: a, np.arange(6.0).reshape(2, 3).T)


class _Cube(tinynet.Function):
    """x**3 whose backward adds ``error`` to element ``where`` of the input gradient."""

    error, where = 0.0, 0

    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, grad):
        dx = grad * 3 * self.x ** 2
        dx.reshape(-1)[self.where] += self.error
        return dx


def _cube_with_error(error, where=0):
    return type("PlantedCube", (_Cube,), {"error": error, "where": where})


def test_a_correct_function_passes_and_the_inputs_are_left_as_they_were():
    x = tinynet.tensor([[0.5, -1.5], [2.0, 1.25]], dtype=np.float64, requires_grad=True)
    data = x.data
    x.grad = tinynet.tensor(np.full((2, 2), 100.0))   # a stale gradient must not be added to the analytic one
    assert gradcheck(lambda t: _Cube.apply(t), [x]) is True
    assert x.data is data
    np.testing.assert_array_equal(x.data, [[0.5, -1.5], [2.0, 1.25]])


@pytest.mark.parametrize("x", [
    np.array([10.0, -2.0, 0.5]),   # a large derivative at element 0: the rtol term dominates
    np.array([1e-3, -2.0, 0.5]),   # a tiny one: the atol term dominates
])
def test_an_error_just_beyond_the_tolerance_fails_and_one_just_within_passes(x):
    """allowed = atol + rtol * |numerical| for element 0 (atol 1e-5, rtol 1e-3)."""
    weights = np.random.default_rng(0).standard_normal(3)      # gradcheck's weights for seed 0
    numerical = 3 * x[0] ** 2 * weights[0]
    allowed = 1e-5 + 1e-3 * abs(numerical)
    for factor, passes in [(0.8, True), (1.25, False), (-1.25, False)]:
        t = tinynet.tensor(x.copy(), dtype=np.float64, requires_grad=True)
        function = _cube_with_error(factor * allowed)
        assert gradcheck(lambda v: function.apply(v), [t], raise_exception=False) is passes, (factor, allowed)
    t = tinynet.tensor(x.copy(), dtype=np.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"^gradcheck failed for input 0 \(shape \(3,\)\) at element \(0,\): "
                                             r"analytic \S+, numerical \S+, \|difference\| \S+ > allowed \S+; "
                                             r"1 of 3 elements disagree$"):
        gradcheck(lambda v: _cube_with_error(2 * allowed).apply(v), [t])


def test_the_second_input_is_checked_and_named_and_an_unused_input_needs_zero_gradients():
    x = tinynet.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    y = tinynet.tensor([0.5, -1.0, 3.0], dtype=np.float64, requires_grad=True)
    frozen = tinynet.tensor([4.0, 5.0], dtype=np.float64)                 # passed through, not checked
    assert gradcheck(lambda a, b, c: a * c + b.sum(), [x, y, frozen])
    assert gradcheck(lambda a, b, c: a * c, [x, y, frozen])               # b takes no part: zero gradient
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(3,\)\) at element \(2,\)"):
        gradcheck(lambda a, b, c: a * c + _cube_with_error(1.0, where=2).apply(b).sum(), [x, y, frozen])


def test_a_single_tensor_may_be_passed_without_a_list_and_bad_inputs_are_refused():
    x = tinynet.tensor([1.0, -2.0], dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda t: t * t, x)
    with pytest.raises(ValueError, match="no input has requires_grad"):
        gradcheck(lambda t: t * t, [tinynet.tensor([1.0], dtype=np.float64)])
    with pytest.raises(ValueError) as error:
        gradcheck(lambda t: t * t, [tinynet.tensor([1.0], dtype=np.float32, requires_grad=True)])
    assert str(error.value) == ("gradcheck: input 0 has dtype float32; central differences need float64 "
                                "(eps=1e-06 is lost in float32 rounding) -- use tensor.double()")
