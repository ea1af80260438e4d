"""The kernel-backed autograd Functions and nn layers: float64 gradchecks through autograd,
PyTorch parity of whole layers, and the errors a user meets when wiring a layer wrongly."""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import tinynet
from tinynet import nn
from tinynet.nn import functional as F

seeds = st.integers(0, 2**31 - 1)


def examples(device, cpu=15, gpu=2):
    """Hypothesis examples per device: the GPU path runs its kernels in numba's CUDA simulator,
    one CUDA thread at a time in Python, far slower than the CPU path, so it gets fewer and
    smaller cases (the CPU path checks the math; the GPU cases check the GPU kernels' wiring)."""
    return cpu if device == "cpu" else gpu


def double(rng, *shape, device="cpu"):
    return tinynet.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=True, device=device)


def test_conv2d_function_gradcheck(device, monkeypatch):
    """Strides, padding, dilation, groups; on the CPU also the Winograd path (its size thresholds
    lowered so that it runs at gradcheck sizes) next to im2col + GEMM."""
    from tinynet.kernels import conv2d as conv2d_kernels, conv2d_winograd
    monkeypatch.setattr(conv2d_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(conv2d_winograd, "MIN_PIXELS", 1)
    small = device != "cpu"

    @settings(max_examples=examples(device, cpu=25, gpu=6))
    @given(st.integers(1, 2 - small), st.sampled_from([(2, 1), (2, 2)] if small else [(2, 1), (4, 2), (3, 3)]),
           st.integers(3, 4 if small else 6), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1),
           st.integers(1, 2), st.sampled_from(["auto", "im2col"]), seeds)
    @example(1, (2, 2), 4, 2, 1, 1, 2, "auto", 0)   # dilation, always
    @example(1, (2, 1), 4, 3, 1, 1, 1, "auto", 1)   # Winograd on the CPU, im2col on the GPU, always
    def check(n, channels_groups, size, kernel, stride, padding, dilation, algorithm, seed):
        channels, groups = channels_groups
        size = max(size, (kernel - 1) * dilation + 1 - 2 * padding)  # the window must fit
        rng = np.random.default_rng(seed)
        x = double(rng, n, channels, size, size, device=device)
        w = double(rng, 2 * groups, channels // groups, kernel, kernel, device=device)
        b = double(rng, 2 * groups, device=device)
        with conv2d_kernels.use_algorithm(algorithm):
            chosen = conv2d_kernels.choose_algorithm(x.data, w.shape, (stride,) * 2, (padding,) * 2,
                                                     (dilation,) * 2, groups)
            winograd_applies = (device == "cpu" and algorithm == "auto" and stride == dilation == 1
                                and 2 <= kernel and padding < kernel)
            assert (chosen == "winograd") == winograd_applies
            assert tinynet.gradcheck(
                lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation=dilation, groups=groups), [x, w, b])
    check()


def test_pooling_functions_gradcheck(device):
    """Max pooling with padding and ceil_mode, average pooling, adaptive average pooling."""
    small = device != "cpu"

    @settings(max_examples=examples(device, cpu=20, gpu=5))
    @given(st.integers(1, 2 - small), st.integers(1, 3 - 2 * small), st.integers(3, 4 if small else 7),
           st.integers(2, 3), st.integers(1, 3), st.booleans(), st.booleans(), seeds)
    @example(1, 1, 4, 3, 2, True, True, 0)  # max-pool padding and ceil_mode together, always
    def check(n, channels, size, kernel, stride, padded, ceil_mode, seed):
        rng = np.random.default_rng(seed)
        values = rng.permutation(n * channels * size * size).reshape(n, channels, size, size) * 0.1  # no ties
        x = tinynet.tensor(values, dtype=np.float64, requires_grad=True, device=device)
        padding = kernel // 2 if padded else 0  # PyTorch's limit: at most half the window
        assert tinynet.gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding, ceil_mode), [x])
        assert tinynet.gradcheck(lambda x: F.avg_pool2d(x, kernel, stride, padding=1), [x])
        assert tinynet.gradcheck(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), [x])
    check()


def test_local_response_norm_function_gradcheck(device):
    small = device != "cpu"

    @settings(max_examples=examples(device, gpu=5))
    @given(st.integers(1, 2 - small), st.integers(1, 4 if small else 6), st.integers(1, 2 if small else 3),
           st.sampled_from([1, 2, 3, 5]), st.sampled_from([1e-4, 0.5, 1.0]), st.booleans(), seeds)
    def check(n, channels, size, window, alpha, scaled, seed):
        rng = np.random.default_rng(seed)
        x = double(rng, n, channels, size, size, device=device)
        assert tinynet.gradcheck(
            lambda x: F.local_response_norm(x, window, alpha, 0.75, 2.0, alpha_scaled_by_size=scaled), [x])
    check()


def test_linear_and_dropout_functions_gradcheck(device):
    @settings(max_examples=examples(device, gpu=5))
    @given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), seeds)
    def check(n, inputs, outputs, seed):
        rng = np.random.default_rng(seed)
        x, w, b = (double(rng, n, inputs, device=device), double(rng, outputs, inputs, device=device),
                   double(rng, outputs, device=device))
        assert tinynet.gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])

        def fixed_mask_dropout(x):
            tinynet.manual_seed(seed)  # the same mask on every evaluation
            return F.dropout(x, 0.4, training=True)
        assert tinynet.gradcheck(fixed_mask_dropout, [x])
    check()


def test_layers_match_torch_forward_and_backward(device):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the [oracle] extra")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 11, 11)).astype(np.float32)
    ours = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                         nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.LocalResponseNorm(3, alpha=0.1, k=2.0),
                         nn.AvgPool2d(2, padding=1), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(3, stride=2, ceil_mode=True),
                                 torch.nn.LocalResponseNorm(3, alpha=0.1, k=2.0), torch.nn.AvgPool2d(2, padding=1),
                                 torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(24, 3))
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    inputs = tinynet.tensor(x, requires_grad=True, device=device)
    output = ours(inputs)
    assert output.device == device
    output.backward(tinynet.tensor(np.ones(output.shape, np.float32), device=device).data)
    reference_inputs = torch.tensor(x, requires_grad=True)
    reference = theirs(reference_inputs)
    reference.sum().backward()
    np.testing.assert_allclose(output.numpy(), reference.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inputs.grad.numpy(), reference_inputs.grad.numpy(), rtol=1e-4, atol=1e-6)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert p.device == device, name
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_first_layer_skips_the_input_gradient():
    layer = nn.Conv2d(3, 2, 3)
    image = tinynet.tensor(np.ones((1, 3, 5, 5), np.float32))  # requires_grad=False, like a photo
    layer(image).sum().backward()
    assert image.grad is None and layer.weight.grad is not None


def test_wrong_channel_count_names_layer_and_shapes():
    layer = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*expected input of shape \(N, 3, H, W\), got \(1, 4, 9, 9\)"):
        layer(tinynet.tensor(np.zeros((1, 4, 9, 9), np.float32)))


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"conv2d.*kernel.*\(5, 5\).*padded input \(4, 4\)"):
        nn.Conv2d(1, 1, 5, padding=1)(tinynet.tensor(np.zeros((1, 1, 2, 2), np.float32)))
    with pytest.raises(ValueError, match=r"max_pool2d.*\(3, 3\).*\(2, 2\)"):
        nn.MaxPool2d(3)(tinynet.tensor(np.zeros((1, 1, 2, 2), np.float32)))


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="groups=2 must divide in_channels=3"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        F.conv2d(tinynet.tensor(np.zeros((1, 3, 5, 5), np.float32)),
                 tinynet.tensor(np.zeros((4, 1, 3, 3), np.float32)), groups=2)


def test_non_4d_input():
    with pytest.raises(ValueError, match=r"4-D.*\(3, 9, 9\)"):
        nn.MaxPool2d(2)(tinynet.tensor(np.zeros((3, 9, 9), np.float32)))
    with pytest.raises(ValueError, match=r"Conv2d.*got \(3, 9, 9\)"):
        nn.Conv2d(3, 1, 3)(tinynet.tensor(np.zeros((3, 9, 9), np.float32)))


def test_dropout_conventions():
    x = tinynet.tensor(np.ones((1000,), np.float32))
    tinynet.manual_seed(0)
    y = F.dropout(x, p=0.25, training=True).numpy()
    assert abs((y == 0).mean() - 0.25) < 0.05  # p is the probability of dropping
    np.testing.assert_allclose(y[y != 0], 1 / 0.75)
    np.testing.assert_array_equal(F.dropout(x, 0.25, training=False).numpy(), 1.0)
    paper = nn.Dropout(0.25, scale_in_training=False).eval()
    np.testing.assert_allclose(paper(x).numpy(), 0.75)
    with pytest.raises(ValueError, match="probability of dropping"):
        nn.Dropout(1.5)
