"""The autograd engine: graph walk, accumulation, retain_graph, no_grad, errors."""
import numpy as np
import pytest

import tinynet
from tinynet.nn import functional as F


def test_chain_rule_on_a_small_expression():
    x = tinynet.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = ((x * x).sum() + x.exp().sum()) / 2
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), (2 * x.numpy() + np.exp(x.numpy())) / 2, rtol=1e-6)


def test_shared_subexpression_gets_gradient_from_every_use():
    x = tinynet.tensor(2.0, requires_grad=True)
    h = x * 3
    y = h * h + h       # dy/dx = (2h + 1) * 3 = 39
    y.backward()
    assert x.grad.item() == pytest.approx(39.0)


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = tinynet.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):  # far deeper than sys.getrecursionlimit()
        y = y * 1.0 + 0.0
    y.sum().backward()
    assert x.grad.item() == pytest.approx(1.0)


def test_gradients_accumulate_across_backward_calls_and_zero_grad_clears():
    x = tinynet.tensor([1.0, -2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_retained_graph_backward_twice_accumulates_leaves_only():
    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    h = x * x            # an intermediate node
    loss = (h * 2).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (4 * x.numpy()))
    assert h.grad is None and loss.grad is None  # no stale gradients on intermediate nodes


def test_second_backward_without_retain_graph_is_a_clear_error():
    x = tinynet.tensor([1.0], requires_grad=True)
    loss = (x * x * 2).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_graph_is_freed_after_backward():
    x = tinynet.tensor(np.ones(3), requires_grad=True)
    y = x.exp()
    loss = y.sum()
    loss.backward()
    assert y.creator.released and not hasattr(y.creator, "y")


def test_retain_grad_keeps_an_intermediate_gradient():
    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())


def test_no_grad_records_nothing():
    x = tinynet.tensor([1.0], requires_grad=True)
    with tinynet.no_grad():
        y = x * 2
    assert not y.requires_grad and y.creator is None
    z = x * 2
    assert z.requires_grad and z.creator is not None


def test_detach_cuts_the_graph():
    x = tinynet.tensor([2.0], requires_grad=True)
    y = x * x
    z = y.detach() * x
    z.sum().backward()
    assert x.grad.item() == pytest.approx(4.0)  # y treated as a constant


def test_backward_on_non_scalar_needs_grad():
    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"single-element.*shape \(2,\)"):
        y.backward()
    y.backward(np.array([1.0, 10.0], dtype=np.float32))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 20.0])


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        tinynet.tensor([1, 2, 3], requires_grad=True)


def test_shape_errors_name_both_shapes():
    a = tinynet.tensor(np.ones((2, 3)))
    b = tinynet.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        a + b


def test_tensor_basics():
    t = tinynet.tensor([[1.5, 2.0]])
    assert t.dtype == np.float32 and t.shape == (1, 2) and t.device == "cpu"
    assert tinynet.tensor([1, 2]).dtype == np.int64
    assert tinynet.tensor(3.5).item() == 3.5
    assert isinstance(t.numpy(), np.ndarray)
    assert np.float64(2.0) * t is not None and isinstance(np.float32(2) * t, tinynet.Tensor)
    with pytest.raises(ValueError, match="exactly one element"):
        t.item()


def test_manual_seed_makes_draws_reproducible():
    tinynet.manual_seed(7)
    a = tinynet.randn(3, 4).numpy()
    tinynet.manual_seed(7)
    b = tinynet.randn(3, 4).numpy()
    np.testing.assert_array_equal(a, b)


def test_custom_function_with_needs_input_grad():
    class Scale(tinynet.Function):
        def forward(self, x, factor):
            self.factor = factor
            return x * factor

        def backward(self, grad):
            assert self.needs_input_grad == (True, False)
            return grad * self.factor, None

    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    Scale.apply(x, tinynet.tensor([3.0, 4.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_training_a_tiny_classifier_reduces_the_loss():
    tinynet.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    labels = (x[:, 0] * x[:, 1] > 0).astype(np.int64)  # XOR-like: needs the hidden layer
    model = tinynet.nn.Sequential(tinynet.nn.Linear(2, 16), tinynet.nn.ReLU(), tinynet.nn.Linear(16, 2))
    optimizer = tinynet.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    first = None
    for _ in range(200):
        loss = F.cross_entropy(model(tinynet.tensor(x)), labels)
        first = first or loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first


# ----------------------------------------------------------------------------- what the graph keeps alive
def test_the_graph_does_not_keep_an_intermediate_that_backward_does_not_need():
    """A ReLU saves its output, not its input: the convolution's output must be freed as soon as the
    ReLU has run (nodes reach computed inputs through GraphEdge, not the tensor), and backward must
    still give the right gradients."""
    import gc
    import weakref
    from tinynet import nn

    rng = np.random.default_rng(0)
    conv = nn.Conv2d(2, 3, 3).double()
    x = tinynet.tensor(rng.standard_normal((2, 2, 6, 6)), requires_grad=True)
    hidden = conv(x)
    hidden_ref, hidden_array_ref = weakref.ref(hidden), weakref.ref(hidden.data)
    expected_mask = hidden.data > 0
    y = nn.functional.relu(hidden)
    del hidden
    gc.collect()
    assert hidden_ref() is None and hidden_array_ref() is None, "the conv output outlived its consumer's forward"
    (y * y).sum().backward()
    grad_y = 2 * np.where(expected_mask, y.data, 0)
    # the same computation with the conv output held (and its gradient retained): same gradients
    conv2 = nn.Conv2d(2, 3, 3).double()
    conv2.load_state_dict({k: v.copy() for k, v in conv.state_dict().items()})
    x2 = tinynet.tensor(x.data.copy(), requires_grad=True)
    hidden2 = conv2(x2)
    hidden2.retain_grad()
    y2 = nn.functional.relu(hidden2)
    (y2 * y2).sum().backward()
    np.testing.assert_allclose(hidden2.grad.numpy(), grad_y)
    np.testing.assert_allclose(conv.weight.grad.numpy(), conv2.weight.grad.numpy())
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy())


def test_retain_grad_called_after_the_forward_pass_still_gets_the_gradient():
    x = tinynet.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    hidden = x * 2
    y = (hidden * hidden).sum()
    hidden.retain_grad()              # after hidden was consumed
    y.backward()
    np.testing.assert_allclose(hidden.grad.numpy(), 2 * hidden.data)
    np.testing.assert_allclose(x.grad.numpy(), 8 * x.data)
