"""Tests of conv2d (im2col + GEMM): the textbook loops, numerical gradients, PyTorch, the GPU path."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from references import conv2d as reference_conv2d    # the seven loops of the definition
from tinynet.backend import to_numpy
from tinynet.gradcheck import numerical_gradient
from tinynet.kernels import _scratch as scratch_memory
from tinynet.kernels import conv2d as conv2d_module
from tinynet.kernels.conv2d import conv2d_backward, conv2d_forward


# ------------------------------------------------------------------ drawn configurations
@st.composite
def conv_configs(draw, max_batch=3, max_groups=3, max_per_group=3, max_extra=4):
    """Shapes and settings of a valid convolution.

    Covers groups (AlexNet's 2 included), a kernel as large as the whole input,
    strides larger than the kernel, dilation, asymmetric settings, odd sizes and batch 1.
    """
    groups = draw(st.integers(1, max_groups))
    batch = draw(st.integers(1, max_batch))
    channels = groups * draw(st.integers(1, max_per_group))
    out_channels = groups * draw(st.integers(1, max_per_group))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if draw(st.booleans()):             # the kernel covers the whole (unpadded) input
        padding, dilation = (0, 0), (1, 1)
        height, width = kernel
    else:
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        smallest = [max(1, dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a]) for a in range(2)]
        height = draw(st.integers(smallest[0], smallest[0] + max_extra))
        width = draw(st.integers(smallest[1], smallest[1] + max_extra))
    return dict(x_shape=(batch, channels, height, width),
                weight_shape=(out_channels, channels // groups) + kernel,
                with_bias=draw(st.booleans()), stride=stride, padding=padding,
                dilation=dilation, groups=groups)


def make_arrays(config, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(config["x_shape"]).astype(dtype)
    weight = rng.standard_normal(config["weight_shape"]).astype(dtype)
    bias = rng.standard_normal(config["weight_shape"][0]).astype(dtype) if config["with_bias"] else None
    return x, weight, bias


def settings_of(config):
    return dict(stride=config["stride"], padding=config["padding"],
                dilation=config["dilation"], groups=config["groups"])


# ------------------------------------------------------------------ forward
@settings(max_examples=60)
@given(conv_configs(), st.integers(0, 2**31 - 1))
def test_forward_matches_the_seven_loops(config, seed):
    x, weight, bias = make_arrays(config, seed, np.float64)
    y, _ = conv2d_forward(x, weight, bias, **settings_of(config))
    expected = reference_conv2d(x, weight, bias, config["stride"], config["padding"],
                                config["dilation"], config["groups"])
    assert y.shape == expected.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_forward_accepts_int_settings_and_keeps_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    weight = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    y, _ = conv2d_forward(x, weight, bias, stride=2, padding=1, dilation=1, groups=2)
    assert y.shape == (2, 6, 5, 5) and y.dtype == np.float32
    expected = reference_conv2d(x, weight, bias, (2, 2), (1, 1), (1, 1), 2)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_groups_are_independent_convolutions():
    """groups=2 (AlexNet's two-GPU split) equals two separate convolutions on the channel halves."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 7, 7))
    weight = rng.standard_normal((4, 3, 3, 3))
    y, _ = conv2d_forward(x, weight, None, padding=1, groups=2)
    first, _ = conv2d_forward(x[:, :3], weight[:2], None, padding=1)
    second, _ = conv2d_forward(x[:, 3:], weight[2:], None, padding=1)
    np.testing.assert_allclose(y, np.concatenate([first, second], axis=1), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ backward: numerical gradients
@settings(max_examples=40)
@given(conv_configs(max_batch=2, max_groups=2, max_extra=3), st.integers(0, 2**31 - 1))
def test_backward_matches_numerical_gradients(config, seed):
    x, weight, bias = make_arrays(config, seed, np.float64)
    keywords = settings_of(config)
    y, saved = conv2d_forward(x, weight, bias, **keywords)
    grad_output = np.random.default_rng(seed + 1).standard_normal(y.shape)
    grad_input, grad_weight, grad_bias = conv2d_backward(grad_output, saved)

    def forward():
        return conv2d_forward(x, weight, bias, **keywords)[0]

    np.testing.assert_allclose(grad_input, numerical_gradient(forward, x, grad_output),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_weight, numerical_gradient(forward, weight, grad_output),
                               rtol=1e-6, atol=1e-7)
    if bias is None:
        assert grad_bias is None
    else:
        np.testing.assert_allclose(grad_bias, numerical_gradient(forward, bias, grad_output),
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(grad_bias, grad_output.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


def test_backward_skips_the_gradients_not_asked_for():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 6, 5))
    weight = rng.standard_normal((4, 2, 3, 2))
    bias = rng.standard_normal(4)
    y, saved = conv2d_forward(x, weight, bias, stride=(2, 1), padding=(1, 0), groups=2)
    grad_output = rng.standard_normal(y.shape)
    full = conv2d_backward(grad_output, saved)
    only_weight = conv2d_backward(grad_output, saved, need_input_grad=False)
    only_input = conv2d_backward(grad_output, saved, need_weight_grad=False)
    neither = conv2d_backward(grad_output, saved, need_input_grad=False, need_weight_grad=False)
    assert only_weight[0] is None and only_input[1] is None and neither[:2] == (None, None)
    np.testing.assert_array_equal(only_weight[1], full[1])
    np.testing.assert_array_equal(only_input[0], full[0])
    for result in (only_weight, only_input, neither):
        np.testing.assert_array_equal(result[2], full[2])


def test_backward_accepts_a_non_contiguous_grad_output():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 5, 5))
    weight = rng.standard_normal((4, 3, 2, 2))
    y, saved = conv2d_forward(x, weight, None)
    grad_output = np.asfortranarray(rng.standard_normal(y.shape))
    expected = conv2d_backward(np.ascontiguousarray(grad_output), saved)
    actual = conv2d_backward(grad_output, saved)
    for got, want in zip(actual[:2], expected[:2]):
        np.testing.assert_array_equal(got, want)
    assert actual[2] is None


def test_repeated_calls_of_different_sizes_do_not_mix_up_scratch_memory():
    """The CPU scratch buffers are reused: results must not alias them or each other."""
    rng = np.random.default_rng(6)
    big = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    small = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    weight = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    y_big, saved_big = conv2d_forward(big, weight)
    copy_big = y_big.copy()
    y_small, saved_small = conv2d_forward(small, weight)
    np.testing.assert_array_equal(y_big, copy_big)
    grads_big = conv2d_backward(np.ones_like(y_big), saved_big)
    grads_small = conv2d_backward(np.ones_like(y_small), saved_small)
    np.testing.assert_allclose(grads_small[1], reference_weight_grad_of_ones(small, 3), rtol=1e-5)
    np.testing.assert_allclose(grads_big[1], reference_weight_grad_of_ones(big, 3), rtol=1e-5)


def reference_weight_grad_of_ones(x, kernel):
    """With dY = 1 and no padding, dW[o, c, i, j] is the sum of x over the window shifted by (i, j)."""
    out_h, out_w = x.shape[2] - kernel + 1, x.shape[3] - kernel + 1
    sums = np.array([[x[:, :, i:i + out_h, j:j + out_w].sum(axis=(0, 2, 3), dtype=np.float64)
                      for j in range(kernel)] for i in range(kernel)])        # (kh, kw, C)
    return np.broadcast_to(sums.transpose(2, 0, 1), (2, x.shape[1], kernel, kernel))


# ------------------------------------------------------------------ PyTorch as the oracle
@settings(max_examples=60)
@given(conv_configs(), st.integers(0, 2**31 - 1))
def test_forward_and_gradients_match_torch_in_float32(config, seed):
    torch = pytest.importorskip("torch", reason="torch is the test oracle for conv2d")
    x, weight, bias = make_arrays(config, seed, np.float32)
    keywords = settings_of(config)
    y, saved = conv2d_forward(x, weight, bias, **keywords)
    grad_output = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    grad_input, grad_weight, grad_bias = conv2d_backward(grad_output, saved)

    x_torch = torch.tensor(x, requires_grad=True)
    weight_torch = torch.tensor(weight, requires_grad=True)
    bias_torch = None if bias is None else torch.tensor(bias, requires_grad=True)
    y_torch = torch.nn.functional.conv2d(x_torch, weight_torch, bias_torch, **keywords)
    y_torch.backward(torch.tensor(grad_output))

    assert y.dtype == grad_input.dtype == grad_weight.dtype == np.float32
    tolerance = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y_torch.detach().numpy(), **tolerance)
    np.testing.assert_allclose(grad_input, x_torch.grad.numpy(), **tolerance)
    np.testing.assert_allclose(grad_weight, weight_torch.grad.numpy(), **tolerance)
    if bias is None:
        assert grad_bias is None
    else:
        assert grad_bias.dtype == np.float32
        np.testing.assert_allclose(grad_bias, bias_torch.grad.numpy(), **tolerance)


def test_alexnet_conv2_shapes_match_torch():
    """A slice of AlexNet's conv2 (5x5, padding 2, groups=2) at its real spatial size, through the
    algorithm the real conv2 runs on the CPU: Winograd (>= 16 channels per group, >= 128 tiles)."""
    torch = pytest.importorskip("torch", reason="torch is the test oracle for conv2d")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 32, 27, 27)).astype(np.float32)
    weight = (0.1 * rng.standard_normal((32, 16, 5, 5))).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    y, saved = conv2d_forward(x, weight, bias, stride=1, padding=2, groups=2)
    assert saved.algorithm == "winograd"
    grad_output = rng.standard_normal(y.shape).astype(np.float32)
    grads = conv2d_backward(grad_output, saved)
    x_torch, weight_torch, bias_torch = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    y_torch = torch.nn.functional.conv2d(x_torch, weight_torch, bias_torch, stride=1, padding=2, groups=2)
    y_torch.backward(torch.tensor(grad_output))
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-4, atol=2e-5 * np.abs(y).max())
    for ours, theirs in zip(grads, (x_torch, weight_torch, bias_torch)):
        reference = theirs.grad.numpy()
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=2e-5 * np.abs(reference).max())


@pytest.mark.parametrize("chunk_bytes", [1, 3000])      # 1 image per chunk; a few images per chunk
def test_chunks_of_images_give_the_same_result_as_one_chunk(monkeypatch, chunk_bytes):
    """The CPU path processes the batch in chunks of images; any chunking, including a ragged
    last chunk, must give the forward loops and the one-chunk gradients."""
    from tinynet.kernels import conv2d as conv2d_module
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 7, 6))
    weight = rng.standard_normal((6, 2, 3, 2))
    bias = rng.standard_normal(6)
    keywords = dict(stride=(1, 2), padding=(1, 1), dilation=(1, 1), groups=2)
    y_one, saved = conv2d_forward(x, weight, bias, **keywords)
    grad_output = rng.standard_normal(y_one.shape)
    grads_one = conv2d_backward(grad_output, saved)

    monkeypatch.setattr(scratch_memory, "CHUNK_BYTES", chunk_bytes)
    assert conv2d_module._images_per_chunk(np, 5, 4 * 3 * 2 * 7 * 3 * 8) < 5
    y, saved = conv2d_forward(x, weight, bias, **keywords)
    np.testing.assert_allclose(y, reference_conv2d(x, weight, bias, (1, 2), (1, 1), (1, 1), 2),
                               rtol=1e-12, atol=1e-12)
    for ours, expected in zip(conv2d_backward(grad_output, saved), grads_one):
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    grad_input, grad_weight, grad_bias = conv2d_backward(grad_output, saved, need_input_grad=False)
    assert grad_input is None
    np.testing.assert_allclose(grad_weight, grads_one[1], rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ GPU path (simulated)
GPU_CASES = [  # tiny: a few hundred simulated threads per launch
    dict(x_shape=(2, 2, 5, 4), weight_shape=(2, 1, 3, 2), with_bias=True,
         stride=(1, 2), padding=(1, 0), dilation=(1, 1), groups=2),
    dict(x_shape=(1, 2, 4, 4), weight_shape=(3, 2, 4, 4), with_bias=False,     # kernel == input
         stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(x_shape=(1, 1, 6, 5), weight_shape=(2, 1, 2, 2), with_bias=True,      # stride > kernel, dilation
         stride=(3, 3), padding=(1, 1), dilation=(2, 1), groups=1),
]


@pytest.mark.parametrize("config", GPU_CASES)
def test_gpu_path_matches_cpu_path(gpu_xp, config):
    x, weight, bias = make_arrays(config, 8, np.float32)
    keywords = settings_of(config)
    y_cpu, saved_cpu = conv2d_forward(x, weight, bias, **keywords)
    grad_output = np.random.default_rng(9).standard_normal(y_cpu.shape).astype(np.float32)
    grads_cpu = conv2d_backward(grad_output, saved_cpu)

    to_gpu = gpu_xp.asarray
    y_gpu, saved_gpu = conv2d_forward(to_gpu(x), to_gpu(weight), None if bias is None else to_gpu(bias),
                                      **keywords)
    assert isinstance(y_gpu, gpu_xp.ndarray) and y_gpu.dtype == np.float32
    np.testing.assert_allclose(to_numpy(y_gpu), y_cpu, rtol=1e-5, atol=1e-5)
    y_inference = conv2d_module.inference(to_gpu(x), to_gpu(weight), None if bias is None else to_gpu(bias),
                                          **keywords)                 # no graph: y alone, on the GPU
    assert isinstance(y_inference, gpu_xp.ndarray)
    np.testing.assert_array_equal(to_numpy(y_inference), to_numpy(y_gpu))
    grads_gpu = conv2d_backward(to_gpu(grad_output), saved_gpu)
    for on_gpu, on_cpu in zip(grads_gpu, grads_cpu):
        if on_cpu is None:
            assert on_gpu is None
            continue
        assert isinstance(on_gpu, gpu_xp.ndarray) and on_gpu.dtype == np.float32
        np.testing.assert_allclose(to_numpy(on_gpu), on_cpu, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_value_errors_naming_the_problem():
    x = np.zeros((2, 4, 6, 6), dtype=np.float32)
    weight = np.zeros((6, 2, 3, 3), dtype=np.float32)
    bias = np.zeros(6, dtype=np.float32)

    def check(pattern, *arguments, **keywords):
        with pytest.raises(ValueError, match=pattern):
            conv2d_forward(*arguments, **keywords)

    check(r"conv2d: expected a 4-D input of shape \(N, C, H, W\), got shape \(4, 6, 6\)", x[0], weight)
    check(r"conv2d: expected a 4-D weight .* got shape \(6, 2, 3\)", x, weight[..., 0])
    check(r"conv2d: input has 4 channels but weight of shape \(6, 2, 3, 3\) with groups=1 expects 2 "
          r".*expected weight shape \(6, 4, 3, 3\)", x, weight)
    check(r"conv2d: input has 4 channels but weight of shape \(4, 2, 3, 3\) with groups=4 expects 8 "
          r".*expected weight shape \(4, 1, 3, 3\)",
          x, weight[:4], groups=4)
    check(r"conv2d: groups=3 must divide the input channels, got 4 input channels", x, weight, groups=3)
    check(r"conv2d: groups=4 must divide the output channels, got 6 output channels", x, weight[:, :1], groups=4)
    check(r"conv2d: groups must be a positive integer, got 0", x, weight, groups=0)
    check(r"conv2d: expected a bias of shape \(6,\) .* got shape \(5,\)", x, weight, bias[:5], groups=2)
    check(r"conv2d: kernel \(3, 3\) \(spanning \(3, 3\)\) is larger than the padded input \(2, 2\)",
          x[:, :, :2, :2], weight, groups=2)
    check(r"conv2d: kernel \(3, 3\) \(spanning \(5, 9\)\) is larger than the padded input \(6, 6\)",
          x, weight, groups=2, dilation=(2, 4))
    check(r"conv2d: kernel_size, stride and dilation must be >= 1 .* stride=\(0, 1\)",
          x, weight, groups=2, stride=(0, 1))
    check(r"conv2d: weight dtype float64 differs from input dtype float32", x, weight.astype(np.float64), groups=2)
    check(r"conv2d: expected a floating-point input .* got dtype int32", x.astype(np.int32), weight, groups=2)

    y, saved = conv2d_forward(x, weight, bias, groups=2)
    with pytest.raises(ValueError, match=r"conv2d: expected grad_output of shape \(2, 6, 4, 4\), got shape \(2, 6, 4, 3\)"):
        conv2d_backward(np.zeros((2, 6, 4, 3), dtype=np.float32), saved)
