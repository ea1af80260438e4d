"""BatchNorm: the kernel against the formula, float64 gradient checks, PyTorch as the oracle.

Shapes and options are drawn with hypothesis: 2-D (N, C) and 3-D (N, C, L) inputs
for BatchNorm1d, 4-D (N, C, H, W) for BatchNorm2d, training and evaluation
mode, with and without the affine part.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import references
import tinynet
from tinynet import nn
from tinynet.kernels import batch_norm as kernel
from tinynet.nn import functional as F

torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")


@st.composite
def batch_norm_cases(draw):
    rank = draw(st.sampled_from([2, 3, 4]))
    batch = draw(st.integers(2, 4))
    channels = draw(st.integers(1, 5))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(rank - 2))
    return dict(shape=(batch, channels) + spatial, training=draw(st.booleans()), affine=draw(st.booleans()),
                momentum=draw(st.sampled_from([0.1, 0.5, 1.0])), eps=draw(st.sampled_from([1e-5, 1e-3])),
                seed=draw(st.integers(0, 2**16)))


def _arrays(case, dtype=np.float64):
    rng = np.random.default_rng(case["seed"])
    channels = case["shape"][1]
    x = (rng.standard_normal(case["shape"]) * 3 + 1).astype(dtype)
    weight = rng.uniform(0.5, 2.0, channels).astype(dtype) if case["affine"] else None
    bias = rng.standard_normal(channels).astype(dtype) if case["affine"] else None
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, channels).astype(dtype)
    return rng, x, weight, bias, running_mean, running_var


@given(batch_norm_cases())
@settings(max_examples=25)
def test_forward_matches_the_formula_and_updates_running_statistics(case):
    _, x, weight, bias, running_mean, running_var = _arrays(case)
    expected_y, expected_mean, expected_var = references.batch_norm(
        x, weight, bias, running_mean, running_var, case["training"], case["momentum"], case["eps"])
    y, _ = kernel.forward(x, weight, bias, running_mean=running_mean, running_var=running_var,
                          training=case["training"], momentum=case["momentum"], eps=case["eps"])
    np.testing.assert_allclose(y, expected_y, rtol=1e-10, atol=1e-10)
    if case["training"]:
        np.testing.assert_allclose(running_mean, expected_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(running_var, expected_var, rtol=1e-12, atol=1e-12)


@given(batch_norm_cases(), st.sampled_from([np.float32, np.float64]))
@settings(max_examples=25)
def test_inference_gives_the_bits_of_forward(case, dtype):
    """``inference`` (no graph: in evaluation one pass that works out each plane's coefficients)
    returns forward's y bit for bit, and in training updates the running statistics alike."""
    _, x, weight, bias, running_mean, running_var = _arrays(case, dtype)
    options = dict(training=case["training"], momentum=case["momentum"], eps=case["eps"])
    stats_forward, stats_inference = [running_mean.copy(), running_var.copy()], [running_mean, running_var]
    y, _ = kernel.forward(x, weight, bias, running_mean=stats_forward[0], running_var=stats_forward[1], **options)
    y_inference = kernel.inference(x, weight, bias, running_mean=stats_inference[0],
                                   running_var=stats_inference[1], **options)
    assert y_inference.shape == x.shape and y_inference.dtype == x.dtype
    np.testing.assert_array_equal(y_inference, y)
    for a, b in zip(stats_inference, stats_forward):
        np.testing.assert_array_equal(a, b)


def test_inference_checks_its_input_like_forward():
    x = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        kernel.inference(x, training=False)
    with pytest.raises(ValueError, match=r"expected weight of shape \(3,\)"):
        kernel.inference(x, np.ones(4, np.float32), running_mean=np.zeros(3, np.float32),
                         running_var=np.ones(3, np.float32), training=False)


@given(batch_norm_cases())
@settings(max_examples=20)
def test_gradients_match_central_differences_in_float64(case):
    _, x, weight, bias, running_mean, running_var = _arrays(case)
    inputs = [tinynet.tensor(x, requires_grad=True)]
    if case["affine"]:
        inputs += [tinynet.tensor(weight, requires_grad=True), tinynet.tensor(bias, requires_grad=True)]

    def function(x, weight=None, bias=None):
        # fresh copies: the training forward updates the running statistics in place
        return F.batch_norm(x, running_mean.copy(), running_var.copy(), weight, bias,
                            training=case["training"], momentum=case["momentum"], eps=case["eps"])

    assert tinynet.gradcheck(function, inputs, atol=1e-7, rtol=1e-5)


def test_input_gradient_goes_through_the_batch_statistics():
    """Planted bug guard: the evaluation-mode formula (dy * gamma * invstd) is wrong in training."""
    rng = np.random.default_rng(0)
    x = tinynet.tensor(rng.standard_normal((4, 3, 2, 2)), requires_grad=True)
    F.batch_norm(x, None, None, training=True).backward(rng.standard_normal((4, 3, 2, 2)))
    # the input gradient of a training-mode normalisation sums to zero over each channel
    np.testing.assert_allclose(x.grad.numpy().sum(axis=(0, 2, 3)), 0.0, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("layer,shape", [("BatchNorm2d", (4, 3, 5, 6)), ("BatchNorm1d", (6, 3)),
                                         ("BatchNorm1d", (4, 3, 7))])
def test_layer_matches_torch_over_several_steps(layer, shape, affine, momentum):
    """Outputs, input/weight/bias gradients and running statistics after every step, then eval."""
    rng = np.random.default_rng(1)
    ours = getattr(nn, layer)(3, momentum=momentum, affine=affine)
    theirs = getattr(torch.nn, layer)(3, momentum=momentum, affine=affine)
    if affine:
        weight, bias = rng.uniform(0.5, 2, 3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
        ours.load_state_dict({"weight": weight, "bias": bias}, strict=False)
        theirs.load_state_dict({"weight": torch.tensor(weight), "bias": torch.tensor(bias)}, strict=False)
    for _ in range(4):
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
        grad = rng.standard_normal(shape).astype(np.float32)
        our_x, their_x = tinynet.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        our_y, their_y = ours(our_x), theirs(their_x)
        our_y.backward(grad)
        their_y.backward(torch.tensor(grad))
        np.testing.assert_allclose(our_y.numpy(), their_y.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(our_x.grad.numpy(), their_x.grad.numpy(), rtol=1e-4, atol=1e-5)
        if affine:
            np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
            ours.zero_grad()
            theirs.zero_grad()
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    our_x, their_x = tinynet.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    our_y, their_y = ours(our_x), theirs(their_x)
    np.testing.assert_allclose(our_y.numpy(), their_y.detach().numpy(), rtol=1e-5, atol=1e-5)
    our_y.backward(np.ones(shape, np.float32))
    their_y.backward(torch.ones(shape))
    np.testing.assert_allclose(our_x.grad.numpy(), their_x.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_without_running_statistics_evaluation_uses_the_batch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 2, 3, 3)).astype(np.float32)
    ours = nn.BatchNorm2d(2, track_running_stats=False).eval()
    theirs = torch.nn.BatchNorm2d(2, track_running_stats=False).eval()
    assert "running_mean" not in ours.state_dict()
    np.testing.assert_allclose(ours(tinynet.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_batch_of_one_in_training_is_pytorchs_error():
    layer = nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        layer(tinynet.tensor(np.ones((1, 4), np.float32)))
    layer.eval()                                   # evaluation normalises a single sample fine
    assert np.isfinite(layer(tinynet.tensor(np.ones((1, 4), np.float32))).numpy()).all()


def test_bad_input_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(tinynet.tensor(np.zeros((2, 4, 5, 5), np.float32)))
    with pytest.raises(ValueError, match=r"\(N, 3\) or \(N, 3, L\)"):
        nn.BatchNorm1d(3)(tinynet.tensor(np.zeros((2, 3, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="expected weight of shape \\(3,\\)"):
        kernel.forward(np.zeros((2, 3)), np.ones(4), None)
    with pytest.raises(ValueError, match="floating-point"):
        kernel.forward(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="needs running_mean and running_var"):
        kernel.forward(np.zeros((2, 3)), training=False)


def test_float32_statistics_do_not_cancel():
    """A large common offset: one-pass E[x^2] - E[x]^2 in float32 would lose the variance."""
    rng = np.random.default_rng(3)
    x = (1e4 + rng.standard_normal((64, 2, 8, 8))).astype(np.float32)
    y, _ = kernel.forward(x, training=True, eps=1e-5)
    np.testing.assert_allclose(y.reshape(64, 2, 64).std(axis=(0, 2)), 1.0, rtol=1e-3)


def test_gpu_path_matches_the_cpu(gpu_xp):
    """The GPU path (CuPy reductions and elementwise code) against the CPU path (numba loops)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    grad = rng.standard_normal(x.shape).astype(np.float32)
    results = {}
    for device in ("cpu", "gpu"):
        layer = nn.BatchNorm2d(4).to(device)
        layer.weight.data = tinynet.backend.to_device(np.linspace(0.5, 2, 4, dtype=np.float32), device)
        inputs = tinynet.tensor(x, device=device, requires_grad=True)
        output = layer(inputs)
        assert output.device == device
        output.backward(tinynet.backend.to_device(grad, device))
        results[device] = [output.numpy(), inputs.grad.numpy(), layer.weight.grad.numpy(),
                           layer.bias.grad.numpy(), tinynet.backend.to_numpy(layer.running_var)]
    for cpu, gpu in zip(results["cpu"], results["gpu"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-5)


def test_gpu_evaluation_without_a_graph_matches_the_cpu(gpu_xp):
    """The GPU path of ``inference`` (coefficients by array code) against the CPU's single pass."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    results = {}
    for device in ("cpu", "gpu"):
        layer = nn.BatchNorm2d(4).to(device)
        layer.running_mean = tinynet.backend.to_device(np.linspace(-1, 1, 4, dtype=np.float32), device)
        layer.running_var = tinynet.backend.to_device(np.linspace(0.5, 2, 4, dtype=np.float32), device)
        layer.weight.data = tinynet.backend.to_device(np.linspace(2, 0.5, 4, dtype=np.float32), device)
        layer.bias.data = tinynet.backend.to_device(np.linspace(-0.5, 0.5, 4, dtype=np.float32), device)
        layer.eval()
        with tinynet.no_grad():
            output = layer(tinynet.tensor(x, device=device))
        assert output.device == device
        results[device] = output.numpy()
    np.testing.assert_allclose(results["gpu"], results["cpu"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 3])
def test_passes_split_into_ranges_match_torch(threads, monkeypatch):
    """Each pass takes ranges of at least ``ELEMENTWISE_GRAIN`` elements (channels or planes);
    with the grain made small, these shapes split into many ranges, and every range must
    compute its own channels: the results against torch's, in training and in evaluation."""
    from tinynet import backend
    from tinynet.kernels import _numba
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 7, 5, 6)) * 2 + 1
    weight, bias = rng.uniform(0.5, 2, 7), rng.standard_normal(7)
    grad = rng.standard_normal(x.shape)
    previous = backend.get_num_threads()
    monkeypatch.setattr(_numba, "ELEMENTWISE_GRAIN", 40)        # 1-2 planes, or one channel, per range
    backend.set_num_threads(threads)
    try:
        for training in (True, False):
            running = [np.full(7, 0.5), np.full(7, 2.0)]
            if not training:
                y_inference = kernel.inference(x, weight, bias, running_mean=running[0], running_var=running[1],
                                               training=False)
            y, saved = kernel.forward(x, weight, bias, running_mean=running[0], running_var=running[1],
                                      training=training)
            if not training:
                np.testing.assert_array_equal(y_inference, y)
            grads = kernel.backward(grad, saved)
            tensors = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
            running_t = [torch.full((7,), 0.5, dtype=torch.float64), torch.full((7,), 2.0, dtype=torch.float64)]
            y_t = torch.nn.functional.batch_norm(tensors[0], *running_t, tensors[1], tensors[2], training=training)
            y_t.backward(torch.tensor(grad))
            np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-10)
            for mine, theirs in zip(running, running_t):
                np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-10, atol=1e-10)
            for mine, tensor in zip(grads, tensors):
                np.testing.assert_allclose(mine, tensor.grad.numpy(), rtol=1e-9, atol=1e-9)
    finally:
        backend.set_num_threads(previous)
