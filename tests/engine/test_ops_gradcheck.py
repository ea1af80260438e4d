"""float64 gradient checks of every differentiable op over hypothesis-drawn shapes, on the CPU
and on the GPU path (the ``device`` fixture of conftest.py: real CuPy on a GPU machine, else the
strict CuPy stand-in).

Each test draws shapes (broadcasting cases included) and values, builds the op
with tinynet and compares autograd's gradient with central differences via
``tinynet.gradcheck``.  Values are drawn away from the places where a
derivative does not exist or is ill-conditioned (ReLU at 0, log near 0, ties
in a max).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet.nn import functional as F

EXAMPLES = 25


def make(rng, shape, low=-2.0, high=2.0, avoid_zero=False, device="cpu"):
    values = rng.uniform(low, high, size=shape)
    if avoid_zero:  # push values out of (-0.1, 0.1), where kinks and poles live
        values = np.where(np.abs(values) < 0.1, np.sign(values + 1e-12) * 0.1 + values, values)
    return tinynet.tensor(values, dtype=np.float64, requires_grad=True, device=device)


shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together: some axes of the second shrunk to 1 or dropped."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    other = tuple(1 if draw(st.booleans()) else n for n in shape)
    drop = draw(st.integers(0, len(other)))
    other = other[drop:]
    if draw(st.booleans()):
        return shape, other
    return other, shape


seeds = st.integers(0, 2**31 - 1)


@settings(max_examples=EXAMPLES)
@given(broadcast_pair(), seeds, st.sampled_from(["add", "sub", "mul", "div"]))
def test_binary_arithmetic_with_broadcasting(device, shapes_pair, seed, op):
    rng = np.random.default_rng(seed)
    a = make(rng, shapes_pair[0], device=device)
    b = make(rng, shapes_pair[1], 0.5, 2.0, device=device) if op == "div" else make(rng, shapes_pair[1], device=device)
    function = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
                "mul": lambda a, b: a * b, "div": lambda a, b: a / b}[op]
    assert tinynet.gradcheck(function, [a, b])
    assert a.grad.shape == a.shape and b.grad.shape == b.shape


@settings(max_examples=EXAMPLES)
@given(shapes, seeds, st.sampled_from([2, 3, 0.5, -1.5]))
def test_pow_and_neg(device, shape, seed, exponent):
    rng = np.random.default_rng(seed)
    x = make(rng, shape, 0.5, 2.0, device=device)
    assert tinynet.gradcheck(lambda x: -(x ** exponent), [x])


@settings(max_examples=EXAMPLES)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2), seeds)
def test_matmul_batched_and_vectors(device, n, k, m, batch_dims, seed):
    rng = np.random.default_rng(seed)
    batch = (2,) * batch_dims
    a = make(rng, batch + (n, k), device=device)
    b = make(rng, (k, m), device=device)  # broadcast over a's batch axes
    assert tinynet.gradcheck(lambda a, b: a @ b, [a, b])
    vector = make(rng, (k,), device=device)
    assert tinynet.gradcheck(lambda a, v: a @ v, [a, vector])
    assert tinynet.gradcheck(lambda v, b: v @ b, [vector, b])


@st.composite
def shape_and_axis(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                          st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape),
                                   unique=True).map(tuple)))
    return shape, axis


@settings(max_examples=EXAMPLES)
@given(shape_and_axis(), st.booleans(), seeds, st.sampled_from(["sum", "mean", "max"]))
def test_reductions(device, shape_axis, keepdims, seed, op):
    shape, axis = shape_axis
    rng = np.random.default_rng(seed)
    # distinct values so the maximum is unique and the numerical derivative exists
    values = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.37 + rng.uniform(-0.01, 0.01, shape)
    x = tinynet.tensor(values, dtype=np.float64, requires_grad=True, device=device)
    assert tinynet.gradcheck(lambda x: getattr(x, op)(axis=axis, keepdims=keepdims), [x])


def test_max_splits_gradient_between_ties(device):
    x = tinynet.tensor([1.0, 3.0, 3.0], requires_grad=True, device=device)
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0.5, 0.5])


@settings(max_examples=EXAMPLES)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), seeds, st.data())
def test_reshape_and_permute(device, shape, seed, data):
    rng = np.random.default_rng(seed)
    x = make(rng, shape, device=device)
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    assert tinynet.gradcheck(lambda x: x.permute(axes).reshape(-1) * 1.5, [x])
    assert tinynet.gradcheck(lambda x: x.reshape(int(np.prod(shape)), 1).T, [x])


@settings(max_examples=EXAMPLES)
@given(st.integers(1, 5), st.integers(1, 4), seeds, st.data())
def test_indexing_with_ints_slices_and_int_arrays(device, rows, columns, seed, data):
    rng = np.random.default_rng(seed)
    x = make(rng, (rows, columns), device=device)
    row = data.draw(st.integers(-rows, rows - 1))
    picks = np.array(data.draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=6)))  # repeats allowed
    assert tinynet.gradcheck(lambda x: x[row], [x])
    assert tinynet.gradcheck(lambda x: x[1:, ::2], [x])
    assert tinynet.gradcheck(lambda x: x[picks], [x])
    assert tinynet.gradcheck(lambda x: x[picks, picks % columns], [x])


def test_repeated_index_accumulates(device):
    x = tinynet.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    x[np.array([0, 0, 2])].sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2, 0, 1])


@settings(max_examples=EXAMPLES)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), seeds)
def test_concat_and_stack(device, n, m, axis, seed):
    rng = np.random.default_rng(seed)
    a, b = make(rng, (n, m), device=device), make(rng, (n, m), device=device)
    assert tinynet.gradcheck(lambda a, b: tinynet.concat([a, b * 2], axis=axis), [a, b])
    assert tinynet.gradcheck(lambda a, b: tinynet.stack([a, b * 3], axis=axis), [a, b])


UNARY = {
    "exp": (lambda x: x.exp(), -2, 2),
    "log": (lambda x: x.log(), 0.2, 3),
    "sqrt": (lambda x: x.sqrt(), 0.2, 3),
    "relu": (lambda x: F.relu(x), -2, 2),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), -2, 2),
    "sigmoid": (lambda x: x.sigmoid(), -4, 4),
    "tanh": (lambda x: x.tanh(), -3, 3),
}


@settings(max_examples=EXAMPLES)
@given(shapes, seeds, st.sampled_from(sorted(UNARY)))
def test_unary_functions(device, shape, seed, name):
    function, low, high = UNARY[name]
    rng = np.random.default_rng(seed)
    x = make(rng, shape, low, high, avoid_zero=name in ("relu", "leaky_relu"), device=device)
    assert tinynet.gradcheck(function, [x])


@settings(max_examples=EXAMPLES)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), seeds, st.data())
def test_softmax_and_log_softmax(device, shape, seed, data):
    rng = np.random.default_rng(seed)
    x = make(rng, shape, -3, 3, device=device)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    assert tinynet.gradcheck(lambda x: F.softmax(x, axis), [x])
    assert tinynet.gradcheck(lambda x: F.log_softmax(x, axis), [x])


@settings(max_examples=EXAMPLES)
@given(st.integers(1, 6), st.integers(2, 5), seeds, st.sampled_from([0.0, 0.1]),
       st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy(device, batch, classes, seed, smoothing, reduction):
    rng = np.random.default_rng(seed)
    logits = make(rng, (batch, classes), -3, 3, device=device)
    targets = rng.integers(0, classes, size=batch)
    assert tinynet.gradcheck(
        lambda z: F.cross_entropy(z, targets, label_smoothing=smoothing, reduction=reduction), [logits])


def test_cross_entropy_is_stable_for_huge_logits(device):
    logits = tinynet.tensor([[1000.0, 0.0], [0.0, -1000.0]], requires_grad=True, device=device)
    loss = F.cross_entropy(logits, np.array([0, 1]))
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(500.0)
    loss.backward()
    assert np.all(np.isfinite(logits.grad.numpy()))


def test_cross_entropy_matches_torch(device):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((7, 5))
    t = rng.integers(0, 5, 7)
    for smoothing in (0.0, 0.2):
        logits = tinynet.tensor(z, dtype=np.float64, requires_grad=True, device=device)
        loss = F.cross_entropy(logits, t, label_smoothing=smoothing)
        loss.backward()
        reference = torch.tensor(z, requires_grad=True)
        expected = torch.nn.functional.cross_entropy(reference, torch.tensor(t), label_smoothing=smoothing)
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
        np.testing.assert_allclose(logits.grad.numpy(), reference.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_gradcheck_names_input_and_element():
    class WrongSquare(tinynet.Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, grad):
            wrong = 2 * self.x
            wrong[1] += 1.0  # a planted bug in one element
            return grad * wrong

    x = tinynet.tensor([1.0, 2.0, 3.0], dtype=np.float64, requires_grad=True)
    with pytest.raises(tinynet.GradcheckError, match=r"input 0 \(shape \(3,\)\) at element \(1,\)"):
        tinynet.gradcheck(lambda x: WrongSquare.apply(x), [x])
    with pytest.raises(ValueError, match="float64"):
        tinynet.gradcheck(lambda x: x * x, [tinynet.tensor([1.0], requires_grad=True)])
