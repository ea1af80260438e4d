"""Tests of the fused SGD step: bit for bit the array formula, every option, both paths."""
import numpy as np
import pytest

from tinynet import backend
from tinynet.kernels._numba import ELEMENTWISE_GRAIN
from tinynet.kernels.sgd_update import sgd_update


def formula_steps(param, grads, lr, momentum, dampening, weight_decay, nesterov):
    """The update rule as plain NumPy array calls (see the module docstring)."""
    p = param.copy()
    v = None
    for g in grads:
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            if v is None:
                v = g.copy()
            else:
                v *= momentum
                v += (1 - dampening) * g
            g = g + momentum * v if nesterov else v
        p -= lr * g
    return p, v


OPTIONS = [dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
           dict(momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=False),
           dict(momentum=0.9, dampening=0.3, weight_decay=0.0, nesterov=False),
           dict(momentum=0.85, dampening=0.0, weight_decay=1e-2, nesterov=True),
           dict(momentum=0.0, dampening=0.0, weight_decay=1e-3, nesterov=False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("contiguous", [True, False])
def test_fused_step_is_the_formula_bit_for_bit(dtype, options, contiguous):
    rng = np.random.default_rng(0)
    shape = (37, 29)
    param = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    expected_param, expected_velocity = formula_steps(param, grads, 0.05, **options)

    if contiguous:
        p = param.copy()
        gradients = grads
    else:                                   # views with strides: the array-call path
        p = np.asfortranarray(param)
        gradients = [np.asfortranarray(g) for g in grads]
    velocity = np.empty_like(p) if options["momentum"] else None
    for step, g in enumerate(gradients):
        sgd_update(p, g, velocity, 0.05, first_step=step == 0, **options)
    assert p.dtype == dtype
    np.testing.assert_array_equal(p, expected_param)
    if options["momentum"]:
        np.testing.assert_array_equal(velocity, expected_velocity)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("options", OPTIONS[1:4])
def test_parameters_split_into_ranges_update_every_element_by_its_own_gradient(threads, options):
    """Past a few ELEMENTWISE_GRAIN elements the CPU step runs in ranges (on several threads):
    each range must read the gradient, velocity and parameter of its own elements."""
    rng = np.random.default_rng(1)
    size = 5 * ELEMENTWISE_GRAIN + 17                 # ranges of uneven length
    param = rng.standard_normal(size).astype(np.float32)
    grads = [rng.standard_normal(size).astype(np.float32) for _ in range(2)]
    expected_param, expected_velocity = formula_steps(param, grads, 0.05, **options)
    previous = backend.get_num_threads()
    backend.set_num_threads(threads)
    try:
        velocity = np.empty_like(param)
        for step, g in enumerate(grads):
            sgd_update(param, g, velocity, 0.05, first_step=step == 0, **options)
    finally:
        backend.set_num_threads(previous)
    np.testing.assert_array_equal(param, expected_param)
    np.testing.assert_array_equal(velocity, expected_velocity)


def test_bad_shapes_name_what_was_expected():
    p = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"gradient shape \(4, 3\) differs from the parameter shape \(3, 4\)"):
        sgd_update(p, np.zeros((4, 3), np.float32), None, 0.1)
    with pytest.raises(ValueError, match=r"momentum 0.9 needs a velocity of the parameter shape \(3, 4\)"):
        sgd_update(p, np.zeros((3, 4), np.float32), None, 0.1, momentum=0.9)
