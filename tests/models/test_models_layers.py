"""The two joins of the model zoo through autograd: the residual add and channel concatenation.

float64 gradchecks over hypothesis-drawn NCHW shapes (tests/engine/test_ops_gradcheck.py covers small 2-D
concats and broadcasting adds; these cover what ResNet and GoogLeNet do: same-shape adds of image
batches, a broadcast bias-like add, and concatenating two to four branches of different widths along
the channels), PyTorch parity of values and gradients, and the shape errors.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet.models.resnet import ZeroPadShortcut

EXAMPLES = 20
seeds = st.integers(0, 2**31 - 1)
dims = st.integers(1, 3)


def make(rng, shape):
    return tinynet.tensor(rng.uniform(-2, 2, size=shape), dtype=np.float64, requires_grad=True)


@settings(max_examples=EXAMPLES)
@given(dims, dims, dims, dims, seeds)
def test_residual_add_gradcheck(n, c, h, w, seed):
    rng = np.random.default_rng(seed)
    fx, x = make(rng, (n, c, h, w)), make(rng, (n, c, h, w))
    # y = relu(F(x) + x) with F(x) standing in as an independent input: both receive the gradient
    assert tinynet.gradcheck(lambda a, b: (a + b) * (a + b), [fx, x])
    # the same tensor on both sides of the add (x + x): the two gradient contributions accumulate
    assert tinynet.gradcheck(lambda a: a + a * 3, [make(rng, (n, c, h, w))])


@settings(max_examples=EXAMPLES)
@given(dims, st.lists(st.integers(1, 3), min_size=2, max_size=4), dims, dims, seeds, st.sampled_from([1, -3]))
def test_channel_concat_gradcheck(n, channels, h, w, seed, axis):
    rng = np.random.default_rng(seed)
    branches = [make(rng, (n, c, h, w)) for c in channels]
    scales = rng.uniform(0.5, 2, size=len(channels))
    # each branch scaled differently, so a gradient routed to the wrong branch shows
    assert tinynet.gradcheck(lambda *b: tinynet.concat([t * float(s) for t, s in zip(b, scales)], axis=axis),
                             branches)


@settings(max_examples=EXAMPLES)
@given(dims, st.integers(1, 3), st.integers(0, 3), st.integers(2, 5), st.sampled_from([1, 2]), seeds)
def test_zero_pad_shortcut_gradcheck(n, c, extra, size, stride, seed):
    rng = np.random.default_rng(seed)
    shortcut = ZeroPadShortcut(c, c + extra, stride)
    assert tinynet.gradcheck(lambda x: shortcut(x) * shortcut(x), [make(rng, (n, c, size, size))])


torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")


@settings(max_examples=EXAMPLES)
@given(dims, st.lists(st.integers(1, 4), min_size=2, max_size=4), st.integers(1, 4), seeds,
       st.booleans())
def test_add_and_concat_match_torch(n, channels, size, seed, broadcast):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, c, size, size)) for c in channels]
    total = sum(channels)
    other = rng.standard_normal((1, total, 1, 1) if broadcast else (n, total, size, size))
    upstream = rng.standard_normal((n, total, size, size))

    ours = [tinynet.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    ours_other = tinynet.tensor(other, dtype="float64", requires_grad=True)
    y = tinynet.concat(ours, axis=1) + ours_other
    (y * tinynet.tensor(upstream)).sum().backward()

    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    theirs_other = torch.tensor(other, requires_grad=True)
    reference = torch.cat(theirs, dim=1) + theirs_other
    (reference * torch.tensor(upstream)).sum().backward()

    np.testing.assert_allclose(y.numpy(), reference.detach().numpy(), rtol=1e-12)
    for a, b in zip(ours + [ours_other], theirs + [theirs_other]):
        assert a.grad.shape == tuple(b.shape)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_zero_pad_shortcut_matches_torch():
    data = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    upstream = np.random.default_rng(1).standard_normal((2, 7, 3, 3))
    x = tinynet.tensor(data, dtype="float64", requires_grad=True)
    y = ZeroPadShortcut(3, 7, 2)(x)
    (y * tinynet.tensor(upstream)).sum().backward()
    rx = torch.tensor(data, requires_grad=True)
    reference = torch.nn.functional.pad(rx[:, :, ::2, ::2], (0, 0, 0, 0, 0, 4))
    (reference * torch.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(y.numpy(), reference.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), rx.grad.numpy())


def test_mismatched_shapes_are_clear_errors():
    a, b = tinynet.zeros(2, 3, 4, 4), tinynet.zeros(2, 3, 5, 5)
    with pytest.raises(ValueError, match="differ outside that axis"):
        tinynet.concat([a, b], axis=1)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        a + tinynet.zeros(2, 4, 4, 4)
    with pytest.raises(ValueError, match="cannot pad 4 channels down to 2"):
        ZeroPadShortcut(4, 2, 1)


def test_zoo_blocks_run_on_either_device(device):
    """A residual block with an option-A shortcut (strided slice + concat with zeros made on x's
    device) and an inception module, forward and backward on the CPU and on the GPU path (CuPy, or
    its stand-in under the CUDA simulator)."""
    from tinynet.models.googlenet import Inception
    from tinynet.models.resnet import BasicBlock
    tinynet.manual_seed(0)
    x = tinynet.tensor(np.random.default_rng(0).standard_normal((2, 2, 4, 4)), dtype="float32").to(device)
    block = BasicBlock(2, 3, stride=2, shortcut="A").to(device)
    y = block(x)
    assert y.shape == (2, 3, 2, 2) and y.device == device
    y.sum().backward()
    assert block.conv1.weight.grad is not None and block.conv1.weight.grad.device == device
    module = Inception(2, 1, 1, 2, 1, 1, 1).to(device)
    z = module(x)
    assert z.shape == (2, 5, 4, 4) and z.device == device
    z.sum().backward()
    assert module.conv5x5.weight.grad.device == device
